# fish completion for lc-gpuprobe(1)

function __lc_gpuprobe_sessions
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

complete -c lc-gpuprobe -f
complete -c lc-gpuprobe -a '(__lc_gpuprobe_sessions)'
complete -c lc-gpuprobe -s d -l deep -d 'also PCIe, ECC, throttling and topology'
complete -c lc-gpuprobe -s l -l local -d 'run nvidia-smi on this machine'
complete -c lc-gpuprobe -s p -l parse -d 'read saved nvidia-smi output from stdin'
complete -c lc-gpuprobe -s T -l table -d 'a verdict for people'
complete -c lc-gpuprobe -s t -l timeout -r -d 'time limit in seconds'
complete -c lc-gpuprobe -s q -l quiet -d 'no progress lines'
complete -c lc-gpuprobe -s v -l verbose -d 'show the remote environment'
complete -c lc-gpuprobe -s h -l help -d 'show help'
