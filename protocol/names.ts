/** Protocol and topic names are versioned so that incompatible peers never misread each other. */
export const MCP_STREAM_PROTOCOL = '/nexus/mcp/1.0.0'
export const ANNOUNCE_TOPIC = '/nexus/1/announce'
export const DEMAND_TOPIC = '/nexus/1/demand'
/** A node hands a peer that newly subscribed its announcement on this protocol, outside gossipsub. */
export const ANNOUNCE_DIRECT_PROTOCOL = '/nexus/announce-direct/1.0.0'
export const WIRE_VERSION = 1
/** The Kademlia DHT of Nexus peers: its own protocol, so it never mixes with the public IPFS DHT. */
export const DHT_PROTOCOL = '/nexus/kad/1.0.0'
