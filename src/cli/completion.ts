import { LOG_TYPES } from '../detect/log-rules.js';
import { GatekeeperError } from '../errors.js';
import { COMMANDS } from './usage.js';

/** Shell completion scripts, generated from the command table (usage.ts) so they never drift from it. */

function optionsOf(name: string): string {
  return [...COMMANDS[name]!.options, '--help'].join(' ');
}

function bash(): string {
  const names = Object.keys(COMMANDS).join(' ');
  const cases = Object.keys(COMMANDS)
    .map((n) => {
      const c = COMMANDS[n]!;
      const words = c.completes === 'command' ? names : c.completes === 'shell' ? 'bash zsh' : c.completes === 'allow' ? 'add remove list' : '';
      const files = c.completes === 'file' ? ' COMPREPLY+=( $(compgen -f -- "$cur") );' : '';
      return `    ${n}) COMPREPLY=( $(compgen -W "${optionsOf(n)} ${words}" -- "$cur") );${files} ;;`;
    })
    .join('\n');
  return `# bash completion for gatekeeper: source <(gatekeeper completion bash)
_gatekeeper() {
  local cur prev cmd
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    --config) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
    --tier) COMPREPLY=( $(compgen -W "proxy firewall" -- "$cur") ); return ;;
    --type) COMPREPLY=( $(compgen -W "auto ${LOG_TYPES.join(' ')}" -- "$cur") ); return ;;
  esac
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${names} --version --help" -- "$cur") )
    return
  fi
  cmd="\${COMP_WORDS[1]}"
  case "$cmd" in
${cases}
  esac
}
complete -F _gatekeeper gatekeeper
`;
}

function zsh(): string {
  const described = Object.entries(COMMANDS)
    .map(([n, c]) => `    '${n}:${c.summary.replace(/'/g, '')}'`)
    .join('\n');
  const cases = Object.keys(COMMANDS)
    .map((n) => {
      const c = COMMANDS[n]!;
      const extra = c.completes === 'file' ? ' _files' : c.completes === 'command' ? ` compadd ${Object.keys(COMMANDS).join(' ')}` : c.completes === 'shell' ? ' compadd bash zsh' : c.completes === 'allow' ? ' compadd add remove list' : '';
      return `    ${n}) compadd -- ${optionsOf(n)};${extra} ;;`;
    })
    .join('\n');
  return `#compdef gatekeeper
# zsh completion for gatekeeper: source <(gatekeeper completion zsh), or save as _gatekeeper in $fpath
_gatekeeper() {
  local -a commands
  commands=(
${described}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "$words[CURRENT-1]" in
    --config) _files; return ;;
    --tier) compadd proxy firewall; return ;;
    --type) compadd auto ${LOG_TYPES.join(' ')}; return ;;
  esac
  case "$words[2]" in
${cases}
  esac
}
if [[ "$funcstack[1]" == "_gatekeeper" ]]; then _gatekeeper "$@"; else compdef _gatekeeper gatekeeper; fi
`;
}

export function completionScript(shell: string | undefined): string {
  if (shell === 'bash') return bash();
  if (shell === 'zsh') return zsh();
  throw new GatekeeperError('GK_ERR_USAGE', `completion needs a shell: gatekeeper completion bash|zsh (got ${JSON.stringify(shell ?? '')})`);
}
