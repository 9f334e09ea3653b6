import { createHash } from 'node:crypto'
import { canonicalJson } from '../../../protocol/canonical-json.ts'
import type { KubeObject } from './kube-api.ts'

/** The port the pod-side host listens on for the node's session frames. */
export const POD_HOST_PORT = 7800
/** The port a streamable-HTTP server is told to listen on inside its pod. */
export const HTTP_SERVER_PORT = 8080
/** Where the pod host reads the server it runs (a stdio launch configuration as JSON). */
export const POD_HOST_SERVER_ENV = 'NEXUS_POD_SERVER'
/** In an image built by the onboarding pipeline: the file holding the server's launch (command, args, env). */
export const POD_LAUNCH_ENV = 'NEXUS_POD_LAUNCH'
/** The command that tells the pod host to run its image's own launch (`NEXUS_POD_LAUNCH`). */
export const IMAGE_LAUNCH_COMMAND = 'nexus:image-launch'

export const MANAGED_BY = 'nexus-node'
export const LABEL_NODE = 'nexus.mcp/node'
export const LABEL_SERVER = 'nexus.mcp/server'
export const ANNOTATION_SERVER_ID = 'nexus.mcp/server-id'
export const ANNOTATION_VERSION = 'nexus.mcp/server-version'
export const ANNOTATION_MANIFEST_HASH = 'nexus.mcp/manifest-hash'
/** Hash of what the node applied: equal means a re-apply would change nothing, so none is sent. */
export const ANNOTATION_SPEC_HASH = 'nexus.mcp/spec-hash'

/** Everything the runtime needs to run one version of one server in the cluster. */
export interface WorkloadSpec {
  serverId: string
  version: string
  manifestHash: string
  /** `registry/repository@sha256:<digest>`: pinned, never a tag. */
  image: string
  transport: 'stdio' | 'streamable-http'
  /** For stdio: the launch configuration the pod host runs, as JSON. */
  podServer?: string
  /** For streamable HTTP: the image's own command, the variable that names its port, its MCP path. */
  command?: string[]
  args: string[]
  httpPath: string
  portEnv: string
  /** The variables the manifest allows, with the operator's values. */
  env: Record<string, string>
  /** What the pod asks the scheduler for, and what it may grow to (see `podResources`). */
  requests: { cpu: number; memoryMiB: number }
  limits: { cpu: number; memoryMiB: number }
  /** Whether the server may open connections out of its pod. */
  egress: boolean
  replicas: number
}

export interface WorkloadContext {
  namespace: string
  /** This node's name in labels: the objects it manages, and only those, carry it. */
  nodeName: string
  /** Where the node's own pods run, and their labels: the only traffic a server's pods admit. */
  nodeNamespace: string
  nodePodLabels: Record<string, string>
}

/** A DNS label (Service names must be one): lower case, digits and `-`, starting with a letter, at most 63. */
function dnsLabel(text: string, max = 63): string {
  const cleaned = text
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/-+/g, '-')
  return cleaned.slice(0, max).replace(/-+$/, '')
}

/** A label value: at most 63 of letters, digits, `-`, `_`, `.`, starting and ending alphanumeric. */
function labelValue(text: string): string {
  return text
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
}

/**
 * The name of one node's objects for one version of a server: the server id, made a DNS label, plus a short
 * hash of the node, id, version and manifest hash — so that two versions, two nodes sharing a namespace, or
 * two ids that clean up alike never share objects.
 */
export function workloadName(
  spec: Pick<WorkloadSpec, 'serverId' | 'version' | 'manifestHash'>,
  nodeName: string,
): string {
  const digest = createHash('sha256')
    .update(`${nodeName}\n${spec.serverId}\n${spec.version}\n${spec.manifestHash}`)
    .digest('hex')
    .slice(0, 10)
  return `mcp-${dnsLabel(spec.serverId, 48)}-${digest}`
}

function labels(spec: WorkloadSpec, context: WorkloadContext, name: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': labelValue(spec.serverId),
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/version': labelValue(spec.version),
    'app.kubernetes.io/component': 'mcp-server',
    'app.kubernetes.io/part-of': 'mcp-nexus',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [LABEL_NODE]: labelValue(context.nodeName),
    [LABEL_SERVER]: labelValue(spec.serverId),
  }
}

/**
 * The label selector of what carries a node's name, its EndpointSlices included (the EndpointSlice controller
 * copies a Service's labels onto its slices).
 */
export function nodeSelector(nodeName: string): string {
  return `${LABEL_NODE}=${labelValue(nodeName)}`
}

/** The label selector of every object a node manages. */
export function managedSelector(nodeName: string): string {
  return `app.kubernetes.io/managed-by=${MANAGED_BY},${LABEL_NODE}=${labelValue(nodeName)}`
}

function servingPort(spec: WorkloadSpec): number {
  return spec.transport === 'stdio' ? POD_HOST_PORT : HTTP_SERVER_PORT
}

/**
 * The pod every server runs in, hardened to pass PodSecurity `restricted`: not root, nothing to escalate to, no
 * capabilities, the runtime's default seccomp profile, a read-only root with a small scratch folder, no API
 * token, and the manifest's resources as requests and limits.
 */
export function podTemplate(
  spec: WorkloadSpec,
  context: WorkloadContext,
  name: string,
): Record<string, unknown> {
  const port = servingPort(spec)
  const env = Object.entries(spec.env)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([envName, value]) => ({ name: envName, value }))
  if (spec.transport === 'stdio') env.push({ name: POD_HOST_SERVER_ENV, value: spec.podServer ?? '{}' })
  else env.push({ name: spec.portEnv, value: String(port) })
  const quantities = (r: { cpu: number; memoryMiB: number }) => ({
    cpu: `${Math.round(r.cpu * 1000)}m`,
    memory: `${r.memoryMiB}Mi`,
  })
  return {
    metadata: { labels: labels(spec, context, name) },
    spec: {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: 'server',
          image: spec.image,
          ...(spec.command === undefined ? {} : { command: spec.command }),
          ...(spec.transport === 'stdio' ? {} : { args: spec.args }),
          ports: [{ name: 'mcp', containerPort: port, protocol: 'TCP' }],
          env,
          resources: { requests: quantities(spec.requests), limits: quantities(spec.limits) },
          readinessProbe: { tcpSocket: { port: 'mcp' }, periodSeconds: 5 },
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          volumeMounts: [{ name: 'scratch', mountPath: '/tmp' }],
        },
      ],
      volumes: [{ name: 'scratch', emptyDir: { sizeLimit: '64Mi' } }],
    },
  }
}

function withSpecHash(object: KubeObject): KubeObject {
  const hash = createHash('sha256').update(canonicalJson(object)).digest('hex').slice(0, 16)
  object.metadata.annotations = { ...object.metadata.annotations, [ANNOTATION_SPEC_HASH]: hash }
  return object
}

function metadata(spec: WorkloadSpec, context: WorkloadContext, name: string) {
  return {
    name,
    namespace: context.namespace,
    labels: labels(spec, context, name),
    annotations: {
      [ANNOTATION_SERVER_ID]: spec.serverId,
      [ANNOTATION_VERSION]: spec.version,
      [ANNOTATION_MANIFEST_HASH]: spec.manifestHash,
    },
  }
}

/** The Deployment, Service and NetworkPolicy of one version of a server, each with the hash of its content. */
export function workloadObjects(spec: WorkloadSpec, context: WorkloadContext): KubeObject[] {
  const name = workloadName(spec, context.nodeName)
  const port = servingPort(spec)
  const selector = { 'app.kubernetes.io/instance': name }
  const deployment: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(spec, context, name),
    spec: {
      replicas: spec.replicas,
      selector: { matchLabels: selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: podTemplate(spec, context, name),
    },
  }
  const service: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(spec, context, name),
    spec: {
      type: 'ClusterIP',
      selector,
      ports: [{ name: 'mcp', port, targetPort: 'mcp', protocol: 'TCP' }],
      publishNotReadyAddresses: false,
    },
  }
  const policy: KubeObject = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: metadata(spec, context, name),
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: spec.egress ? ['Ingress'] : ['Ingress', 'Egress'],
      ingress: [
        {
          from: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': context.nodeNamespace } },
              podSelector: { matchLabels: context.nodePodLabels },
            },
          ],
          ports: [{ protocol: 'TCP', port }],
        },
      ],
      ...(spec.egress ? {} : { egress: [] }),
    },
  }
  return [deployment, service, policy].map(withSpecHash)
}
