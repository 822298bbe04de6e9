# fish completion for lc-bench(1)

function __lc_bench_sessions
	set -l state $XDG_STATE_HOME
	test -n "$state"; or set state $HOME/.local/state
	for f in $state/linode-coder/sessions/*.json
		basename $f .json
	end
end

complete -c lc-bench -f -a '(__lc_bench_sessions)'
complete -c lc-bench -s c -l concurrency -x -a '1 1,4,16,64 1,4,16,64,256' -d 'closed loop: streams in flight, one level each'
complete -c lc-bench -s r -l rate -x -d 'open loop: Poisson arrivals per second, one level each'
complete -c lc-bench -s N -l requests -x -d 'measured requests per level'
complete -c lc-bench -s w -l warmup -x -d 'unmeasured requests before each level'
complete -c lc-bench -s i -l input-tokens -x -d 'prompt length, about'
complete -c lc-bench -s M -l max-tokens -x -d 'tokens each reply must have'
complete -c lc-bench -s t -l timeout -x -a '30 60 120 300' -d 'a stream silent this long fails'
complete -c lc-bench -s s -l seed -x -d 'seed of the Poisson arrivals'
complete -c lc-bench -s u -l url -x -d 'the endpoint base, instead of a session'
complete -c lc-bench -s m -l model -x -d 'the model to ask for (with -u)'
complete -c lc-bench -s k -l api-key-file -r -F -d 'read the API key from this file (with -u)'
complete -c lc-bench -s p -l preset -x -d 'judge against this preset'
complete -c lc-bench -s e -l expect-tokens-per-s -x -d 'judge against this single-stream rate'
complete -c lc-bench -s E -l expect-ttft-ms -x -d 'judge against this time to first token'
complete -c lc-bench -s q -l quiet -d 'no progress lines'
complete -c lc-bench -s v -l verbose -d 'each failed request on stderr'
complete -c lc-bench -s h -l help -d 'show help'
