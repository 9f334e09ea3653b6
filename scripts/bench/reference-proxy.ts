/**
 * The bench's yardstick for a relay hop: the plainest reverse proxy Node.js can run — `node:http` in, a
 * keep-alive `node:http` agent out, bodies piped through untouched, no parsing, no security, no routing. Two
 * of them chained (the hops gateway + node take) show what any two-process Node.js relay costs on the machine
 * the bench runs on, apart from what Nexus itself does.
 *
 * Runs as a child process: argv[2] is the URL it forwards to; it sends `{ port }` when listening, and answers
 * `'cpu'` with `{ cpuMs }`, the process's CPU time so far.
 */
import http from 'node:http'

const target = new URL(process.argv[2]!)
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 })
const server = http.createServer((req, res) => {
  const upstream = http.request(
    {
      host: target.hostname,
      port: target.port,
      path: req.url,
      method: req.method,
      headers: { ...req.headers, host: target.host },
      agent,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    },
  )
  upstream.once('error', () => res.destroy())
  req.pipe(upstream)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.send!({ port: typeof address === 'object' && address !== null ? address.port : 0 })
})
process.on('message', (message) => {
  if (message !== 'cpu') return
  const usage = process.cpuUsage()
  process.send!({ cpuMs: (usage.user + usage.system) / 1000 })
})
process.on('disconnect', () => process.exit(0))
