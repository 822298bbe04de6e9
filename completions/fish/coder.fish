# fish completion for coder(1)

function __lc_sessions
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

set -l verbs plan up down list status use extend cleanup cost cache presets regions types aider tunnel ssh exec logs check heal bench validate-perf switch-model watch wizard validate help
set -l with_session down status use extend aider tunnel ssh exec logs check heal bench validate-perf switch-model

complete -c coder -f
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -a "$verbs"
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l help -d 'show help'
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l version -d 'show the version'
complete -c coder -n "not __fish_seen_subcommand_from $verbs" -l verbose -d 'more detail'
complete -c coder -n "__fish_seen_subcommand_from $with_session" -a '(__lc_sessions)'
complete -c coder -n "__fish_seen_subcommand_from $verbs" -s h -l help -d 'the verb\'s help'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s C -l cloud-config -d 'the cloud-config'
complete -c coder -n "__fish_seen_subcommand_from up plan switch-model" -s p -l preset -r -d 'preset'
complete -c coder -n "__fish_seen_subcommand_from up plan switch-model" -s m -l model -r -d 'model id'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s T -l type -r -d 'Linode type'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s g -l region -r -d 'region'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s i -l image -r -d 'image'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s U -l image-unchecked -d 'an image not tested here'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s P -l public -d 'open port 8000 to this machine'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s a -l allow -r -d 'the address port 8000 admits'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s W -l allow-world -d 'a range wider than /16'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s V -l volume -r -d 'model cache volume'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s G -l nodes -r -d 'VMs in the group'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s k -l cache -d 'keep the model cache on a volume'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s K -l no-cache -d 'no cache volume'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s E -l cache-new -d 'a cache volume of its own'
complete -c coder -n "__fish_seen_subcommand_from up plan" -s z -l cache-size -r -d 'cache volume size in GB'
complete -c coder -n "__fish_seen_subcommand_from cache" -a 'ls rm'
complete -c coder -n "__fish_seen_subcommand_from cost" -s s -l since -r -d 'only since this date'
complete -c coder -n "__fish_seen_subcommand_from cache" -s a -l all -d 'rm: every cache volume'
complete -c coder -n "__fish_seen_subcommand_from up" -s l -l aider -d 'start aider'
complete -c coder -n "__fish_seen_subcommand_from up" -s n -l dry-run -d 'print the plan'
complete -c coder -n "__fish_seen_subcommand_from list" -s a -l all -d 'include archived'
complete -c coder -n "__fish_seen_subcommand_from bench" -s c -l concurrency -r -d 'streams in flight, e.g. 1,4,16'
complete -c coder -n "__fish_seen_subcommand_from bench" -s N -l requests -r -d 'requests per level'
complete -c coder -n "__fish_seen_subcommand_from bench" -s M -l max-tokens -r -d 'tokens a reply'
complete -c coder -n "__fish_seen_subcommand_from bench" -s S -l svg -r -F -d 'SVG chart file'
complete -c coder -n "__fish_seen_subcommand_from up plan list status use extend down cleanup cost cache heal bench validate-perf validate" -s j -l json -d 'records'
complete -c coder -n "__fish_seen_subcommand_from extend" -s b -l by -r -d 'move the deadline by'
complete -c coder -n "__fish_seen_subcommand_from extend" -s d -l deadline -r -d 'deadline from now'
complete -c coder -n "__fish_seen_subcommand_from logs" -s f -l follow -d 'follow'
complete -c coder -n "__fish_seen_subcommand_from tunnel aider" -s p -l port -r -d 'local port'
complete -c coder -n "__fish_seen_subcommand_from watch" -s i -l install -d 'add the cron line'
complete -c coder -n "__fish_seen_subcommand_from watch" -s u -l uninstall -d 'remove it'
complete -c coder -n "__fish_seen_subcommand_from help" -a "$verbs"
