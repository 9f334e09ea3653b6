import type { Announcement } from '../../protocol/announcement.ts'

/** One node as the network page shows it. */
export interface NodeView {
  peerId: string
  draining: boolean
  load: Announcement['load']
  servers: { id: string; version: string; sessions: number }[]
  assignment?: { epoch: number; hash: string }
  links: string[]
  labels?: Announcement['labels']
}

/** Something that happened, for the page's log: a failover, a refusal, a node or a placement that came or went. */
export interface NetworkEvent {
  at: number
  kind: 'failover' | 'refused' | 'node-joined' | 'node-left' | 'server-placed' | 'server-removed'
  text: string
}

export interface NetworkSnapshot {
  at: number
  gateway: { peerId: string; links: string[]; sessions: number }
  nodes: NodeView[]
  /** Each server and the nodes hosting it. */
  servers: { id: string; hosts: string[] }[]
  /** The latest allocation epoch the nodes announce, and whether every node at it computed the same assignment. */
  allocation?: { epoch: number; agree: boolean; hashes: number }
  events: NetworkEvent[]
}

/** The nodes' latest epoch and whether those at it agree on the assignment's hash. */
export function allocationOf(nodes: NodeView[]): NetworkSnapshot['allocation'] {
  const assigned = nodes.filter((n) => n.assignment !== undefined)
  if (assigned.length === 0) return undefined
  const epoch = Math.max(...assigned.map((n) => n.assignment!.epoch))
  const hashes = new Set(assigned.filter((n) => n.assignment!.epoch === epoch).map((n) => n.assignment!.hash))
  return { epoch, agree: hashes.size === 1, hashes: hashes.size }
}

export function nodeView(announcement: Announcement): NodeView {
  return {
    peerId: announcement.peerId,
    draining: announcement.draining,
    load: announcement.load,
    servers: announcement.servers.map((s) => ({ id: s.id, version: s.version, sessions: s.sessions })),
    assignment: announcement.assignment,
    links: announcement.links ?? [],
    labels: announcement.labels,
  }
}

/** Who hosts what, from the nodes' own announcements. */
export function hostingOf(nodes: NodeView[]): NetworkSnapshot['servers'] {
  const hosts = new Map<string, string[]>()
  for (const node of nodes)
    for (const server of node.servers) hosts.set(server.id, [...(hosts.get(server.id) ?? []), node.peerId])
  return [...hosts].sort(([a], [b]) => a.localeCompare(b)).map(([id, peers]) => ({ id, hosts: peers.sort() }))
}

/**
 * The changes between two pictures of the network, as events: nodes that joined or left, and servers placed on
 * or removed from a node (the allocator moving a server shows as one of each).
 */
export function changesBetween(before: NodeView[], after: NodeView[], at: number): NetworkEvent[] {
  const events: NetworkEvent[] = []
  const old = new Map(before.map((n) => [n.peerId, n]))
  const now = new Map(after.map((n) => [n.peerId, n]))
  for (const id of now.keys())
    if (!old.has(id)) events.push({ at, kind: 'node-joined', text: `node ${short(id)} joined` })
  for (const id of old.keys())
    if (!now.has(id)) events.push({ at, kind: 'node-left', text: `node ${short(id)} left` })
  for (const [id, node] of now) {
    const previous = old.get(id)
    if (previous === undefined) continue
    const had = new Set(previous.servers.map((s) => s.id))
    const has = new Set(node.servers.map((s) => s.id))
    for (const server of has)
      if (!had.has(server))
        events.push({ at, kind: 'server-placed', text: `${server} placed on node ${short(id)}` })
    for (const server of had)
      if (!has.has(server))
        events.push({ at, kind: 'server-removed', text: `${server} removed from node ${short(id)}` })
  }
  return events
}

/** A peer id as people read it: its last 8 characters. */
export function short(peerId: string): string {
  return `…${peerId.slice(-8)}`
}
