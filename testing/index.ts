// `mcp-nexus/testing`: whole Nexus networks in one process, for test suites — nodes hosting real MCP servers
// and gateways serving HTTP on loopback, joined over real libp2p (in memory by default).
export { demoServers } from '../node/demo-servers.ts'
export { type NetworkOptions, type NetworkPeer, startNetwork, type TestNetwork } from './network.ts'
