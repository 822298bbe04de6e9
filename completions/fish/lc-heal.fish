# fish completion for lc-heal(1)

function __lc_heal_sessions
	set -l state $XDG_STATE_HOME
	test -n "$state"; or set state $HOME/.local/state
	for f in $state/linode-coder/sessions/*.json
		basename $f .json
	end
end

complete -c lc-heal -f -a '(__lc_heal_sessions)'
complete -c lc-heal -s a -l apply -d 'put the record\'s model and vllm settings on its VM, restart, wait'
complete -c lc-heal -s d -l diagnose -d 'classify a vLLM log read on stdin'
complete -c lc-heal -s f -l if-failed -d 'leave a VM that answers /health alone'
complete -c lc-heal -s n -l dry-run -d 'show the fix, change nothing'
complete -c lc-heal -s p -l plan -d 'apply the next fix to records with a diagnosis, offline'
complete -c lc-heal -s q -l quiet -d 'no progress lines'
complete -c lc-heal -s r -l rounds -x -a '1 2 3' -d 'at most this many rounds'
complete -c lc-heal -s t -l timeout -x -d 'wait this long for /health after a restart'
complete -c lc-heal -s v -l verbose -d 'more detail on stderr'
complete -c lc-heal -s h -l help -d 'show help'
