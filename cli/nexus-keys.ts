import { createApiKey, readKeyFile, revokeApiKey } from '../gateway/api-keys.ts'
import { NexusError } from '../protocol/errors.ts'

export interface KeyOptions {
  'keys-file'?: string
  principal?: string
  scope?: string[]
}

const print = (line: string) => process.stdout.write(`${line}\n`)

/** `nexus keys …`: API keys for a gateway's key file. The key is printed once, at creation. */
export function keysCommand(sub: string | undefined, args: string[], o: KeyOptions): number {
  const file = o['keys-file']
  if (file === undefined) throw new NexusError('INVALID_CONFIG', 'missing --keys-file <file>')
  switch (sub) {
    case 'create': {
      if (o.principal === undefined) throw new NexusError('INVALID_CONFIG', 'missing --principal <name>')
      const { key, record } = createApiKey(file, o.principal, o.scope ?? [])
      process.stderr.write(
        `created key ${record.id} for ${record.principal}; it is shown once, store it now:\n`,
      )
      print(key)
      return 0
    }
    case 'list':
      for (const k of readKeyFile(file))
        print(
          `${k.id}  ${k.principal}  ${k.scopes.join(',') || '(no scopes)'}  created ${k.createdAt}` +
            (k.revokedAt ? `  revoked ${k.revokedAt}` : ''),
        )
      return 0
    case 'revoke': {
      const id = args[0]
      if (id === undefined) throw new NexusError('INVALID_CONFIG', 'missing the key id')
      const record = revokeApiKey(file, id)
      print(`revoked ${record.id} (${record.principal})`)
      return 0
    }
    default:
      throw new NexusError('INVALID_CONFIG', `unknown command: keys ${sub ?? ''} (create, list, revoke)`)
  }
}
