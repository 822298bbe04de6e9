# fish completion for lc-destroy(1)

function __lc_destroy_sessions
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

complete -c lc-destroy -f
complete -c lc-destroy -a '(__lc_destroy_sessions)'
complete -c lc-destroy -s h -l help -d 'show help'
complete -c lc-destroy -s j -l jobs -r -d 'sessions deleted at once'
complete -c lc-destroy -s n -l dry-run -d 'check, delete nothing'
complete -c lc-destroy -s q -l quiet -d 'no progress lines'
complete -c lc-destroy -s t -l timeout -r -d 'how long to wait for each VM to be gone'
complete -c lc-destroy -s v -l verbose -d 'more detail'
