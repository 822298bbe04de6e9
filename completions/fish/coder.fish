# fish completion for coder(1)

function __lc_sessions
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

set -l verbs plan up down list status use extend cleanup presets regions types aider tunnel ssh exec logs check heal switch-model watch wizard validate help
set -l with_session down status use extend aider tunnel ssh exec logs check heal switch-model

complete -c coder -f
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -a "$verbs"
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l help -d 'show help'
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l version -d 'show the version'
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l verbose -d 'more detail'
complete -c coder -n "__fish_seen_subcommand_from $with_session" -a '(__lc_sessions)'
complete -c coder -n "__fish_seen_subcommand_from plan" -l json -d 'the spec record'
complete -c coder -n "__fish_seen_subcommand_from plan" -l cloud-config -d 'the cloud-config'
complete -c coder -n "__fish_seen_subcommand_from up plan" -l preset -r -d 'preset'
complete -c coder -n "__fish_seen_subcommand_from up" -l model -r -d 'model id'
complete -c coder -n "__fish_seen_subcommand_from up" -l type -r -d 'Linode type'
complete -c coder -n "__fish_seen_subcommand_from up" -l region -r -d 'region'
complete -c coder -n "__fish_seen_subcommand_from up" -l image -r -d 'image'
complete -c coder -n "__fish_seen_subcommand_from up" -l public -d 'open port 8000 to this machine'
complete -c coder -n "__fish_seen_subcommand_from up" -l allow -r -d 'the address port 8000 admits'
complete -c coder -n "__fish_seen_subcommand_from up" -l volume -r -d 'model cache volume'
complete -c coder -n "__fish_seen_subcommand_from up" -l aider -d 'start aider'
complete -c coder -n "__fish_seen_subcommand_from up" -l dry-run -d 'print the plan'
complete -c coder -n "__fish_seen_subcommand_from list" -l all -d 'include archived'
complete -c coder -n "__fish_seen_subcommand_from status validate" -l json -d 'records'
complete -c coder -n "__fish_seen_subcommand_from extend" -l by -r -d 'move the deadline by'
complete -c coder -n "__fish_seen_subcommand_from extend" -l deadline -r -d 'deadline from now'
complete -c coder -n "__fish_seen_subcommand_from logs" -l follow -d 'follow'
complete -c coder -n "__fish_seen_subcommand_from tunnel aider" -s p -l port -r -d 'local port'
complete -c coder -n "__fish_seen_subcommand_from switch-model" -l preset -r -d 'preset'
complete -c coder -n "__fish_seen_subcommand_from switch-model" -l model -r -d 'model'
complete -c coder -n "__fish_seen_subcommand_from watch" -l install -d 'add the cron line'
complete -c coder -n "__fish_seen_subcommand_from watch" -l uninstall -d 'remove it'
complete -c coder -n "__fish_seen_subcommand_from help" -a "$verbs"
