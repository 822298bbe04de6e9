# fish completion for lc-create(1)

complete -c lc-create -f
complete -c lc-create -s a -l allow -r -d 'address port 8000 admits'
complete -c lc-create -s W -l allow-world -d 'let --allow be wider than /16 or /48'
complete -c lc-create -s G -l nodes -r -d 'VMs in the group'
complete -c lc-create -s h -l help -d 'show help'
complete -c lc-create -s m -l max-hourly -r -d 'refuse types dearer per hour'
complete -c lc-create -s n -l dry-run -d 'print the request and cost, send nothing'
complete -c lc-create -s P -l public -d 'open port 8000 to the --allow address'
complete -c lc-create -s q -l quiet -d 'no progress lines'
complete -c lc-create -s t -l timeout -r -d 'how long --wait waits'
complete -c lc-create -s u -l until -x -a 'running ssh secrets cloud-init gpu health completion' -d 'wait up to this stage'
complete -c lc-create -s v -l verbose -d 'more detail'
complete -c lc-create -s w -l wait -d 'wait until the VM runs'
