# fish completion for lc-account(1)

complete -c lc-account -f
complete -c lc-account -n 'not __fish_seen_subcommand_from regions types whoami' -a regions -d 'regions with GPU Linodes'
complete -c lc-account -n 'not __fish_seen_subcommand_from regions types whoami' -a types -d 'GPU plans, prices, stock'
complete -c lc-account -n 'not __fish_seen_subcommand_from regions types whoami' -a whoami -d 'the profile behind the token'
complete -c lc-account -s h -l help -d 'show help'
complete -c lc-account -s H -l table -d 'an aligned table for people'
complete -c lc-account -s q -l quiet -d 'no warnings about missing stock data'
