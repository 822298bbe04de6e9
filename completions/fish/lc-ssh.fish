# fish completion for lc-ssh(1)

function __lc_ssh_sessions
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

complete -c lc-ssh -f
complete -c lc-ssh -n 'not contains -- -- (commandline -opc)' -a '(__lc_ssh_sessions)'
complete -c lc-ssh -s i -l interactive -d 'the system ssh, pinned'
complete -c lc-ssh -s l -l logs -d 'cloud-init and vLLM logs'
complete -c lc-ssh -s f -l follow -d 'logs: keep following'
complete -c lc-ssh -s L -l tunnel -d 'forward a local port to vLLM'
complete -c lc-ssh -s p -l port -r -d 'tunnel: local port'
complete -c lc-ssh -s n -l dry-run -d 'print what would run'
complete -c lc-ssh -s t -l timeout -r -d 'time limit for the command'
complete -c lc-ssh -s w -l wait -r -d 'retry a refused connection this long'
complete -c lc-ssh -s q -l quiet -d 'no progress lines'
complete -c lc-ssh -s v -l verbose -d 'show the remote environment'
complete -c lc-ssh -s h -l help -d 'show help'
