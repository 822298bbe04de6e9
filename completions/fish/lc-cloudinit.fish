# fish completion for lc-cloudinit(1)

function __lc_cloudinit_presets
    lc-cloudinit --list-presets 2>/dev/null | sed -n 's/^{"name":"\([^"]*\)".*/\1/p'
end

complete -c lc-cloudinit -f
complete -c lc-cloudinit -s c -l context -r -d 'vLLM max_model_len'
complete -c lc-cloudinit -s G -l nodes -r -d 'VMs in the group'
complete -c lc-cloudinit -s g -l region -r -d 'Linode region'
complete -c lc-cloudinit -s H -l table -d 'with -L, a table for people'
complete -c lc-cloudinit -s i -l image -r -a 'linode/ubuntu24.04 linode/ubuntu24.04-nvidia' -d 'Linode image'
complete -c lc-cloudinit -s I -l vllm-image -r -d 'vLLM container image'
complete -c lc-cloudinit -s L -l list-presets -d 'one record per preset'
complete -c lc-cloudinit -s m -l model -r -d 'Hugging Face model id'
complete -c lc-cloudinit -s N -l name -r -d 'make one spec with this name'
complete -c lc-cloudinit -s p -l preset -r -a '(__lc_cloudinit_presets)' -d 'preset'
complete -c lc-cloudinit -s P -l public -d 'serve on all interfaces'
complete -c lc-cloudinit -s q -l quiet -d 'no warnings'
complete -c lc-cloudinit -s r -l raw -d 'print the cloud-config itself'
complete -c lc-cloudinit -s R -l resolve -d 'resolve and check only: no config layer, no cloud-config'
complete -c lc-cloudinit -s T -l type -r -d 'Linode GPU type'
complete -c lc-cloudinit -s U -l image-unchecked -d 'take an image not tested with'
complete -c lc-cloudinit -s v -l verbose -d 'say which presets files were read'
complete -c lc-cloudinit -s V -l volume -r -d 'Block Storage volume for the model cache'
complete -c lc-cloudinit -s k -l cache -d 'keep the model cache on a volume'
complete -c lc-cloudinit -s K -l no-cache -d 'no cache volume'
complete -c lc-cloudinit -s E -l cache-new -d 'a cache volume of its own'
complete -c lc-cloudinit -s z -l cache-size -r -d 'cache volume size in GB'
complete -c lc-cloudinit -s h -l help -d 'help'
