import t from 'tap'
import { POD_HOST_RESOURCES, podResources } from '../node/runtime/kubernetes/workload-spec.ts'

// A stdio server's pod runs the pod host and a process per session plus its warm pool: its requests and limits
// must count them, or the kernel kills the pod at its second session (seen running real images under runc
// with one instance's memory as the limit).

t.test(
  'a stdio pod requests the host and its busy and warm instances, and may grow to sessionsPerPod',
  async (t) => {
    const { requests, limits } = podResources({ cpu: 0.25, memoryMiB: 128 }, 'stdio', 1, 16)
    t.same(requests, { cpu: POD_HOST_RESOURCES.cpu + 0.5, memoryMiB: POD_HOST_RESOURCES.memoryMiB + 256 })
    t.same(limits, { cpu: POD_HOST_RESOURCES.cpu + 4.25, memoryMiB: POD_HOST_RESOURCES.memoryMiB + 17 * 128 })
  },
)

t.test('a streamable-HTTP pod is one instance: the manifest resources, as requests and limits', async (t) => {
  const instance = { cpu: 0.5, memoryMiB: 256 }
  t.same(podResources(instance, 'streamable-http', 0, 16), { requests: instance, limits: instance })
})
