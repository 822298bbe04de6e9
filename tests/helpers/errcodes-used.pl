#!/usr/bin/perl
# Print each error code the C files given can put on a record, one a line:
# the code argument of lc_errorf, lc_error_from_invalid and lib's wrappers
# (api_error, sys_error, preset's lookup), the ready stages' table, and the
# literals picked into a variable named code (linode.c's HTTP statuses).
# A code argument with no literal in a form not known here is printed as
# "? file: argument", so that a new way of naming codes is noticed.
use strict;
use warnings;

my %arg = (lc_errorf => 0, api_error => 1, sys_error => 0,
    lc_error_from_invalid => 1, lookup => 4);
my $call = qr/(\((?:[^()"]++|"(?:[^"\\]|\\.)*"|(?-1))*\))/;
my $lc_call = qr/\blc_\w+\((?:[^()]++|\([^()]*\))*\)/;
# code arguments that pass on a code named elsewhere
my $known = qr/^(?:code|stages\[[\w ]+\]\.code|lc_error_code\(\W?\w+\))$/;
my %codes;
local $/;
for my $f (@ARGV) {
	open my $fh, '<', $f or die "$f: $!\n";
	my $s = <$fh>;
	$s =~ s{/\*.*?\*/}{}gs;
	while ($s =~ /\b(lc_errorf|api_error|sys_error|lc_error_from_invalid|lookup)\s*$call/g) {
		my ($fn, $args) = ($1, substr($2, 1, -1));
		my ($d, $cur, @a) = (0, '');
		while ($args =~ /\G("(?:[^"\\]|\\.)*"|[(),]|[^(),"]+)/g) {
			my $t = $1;
			$d++ if $t eq '(';
			$d-- if $t eq ')';
			if ($t eq ',' && $d == 0) {
				push @a, $cur;
				$cur = '';
			} else {
				$cur .= $t;
			}
		}
		push @a, $cur;
		next if !defined $a[$arg{$fn}];
		(my $x = $a[$arg{$fn}]) =~ s/^\s+|\s+$//g;
		next if $x =~ /^const char \*/;	# a definition
		$x =~ s/\s+/ /g;
		(my $lits = $x) =~ s/$lc_call//g;
		my $n = 0;
		$codes{$1} = ++$n while $lits =~ /"([a-z][a-z0-9_]*)"/g;
		print "? $f: $x\n" if !$n && $x !~ $known;
	}
	$codes{$1} = 1 while $s =~ /\{\s*"[^"]*",\s*"(ready_[a-z_]+)",\s*\d+,/g;
	while ($s =~ /\bcode = ([^;]*);/g) {
		(my $x = $1) =~ s/$lc_call//g;
		$codes{$1} = 1 while $x =~ /"([a-z][a-z0-9_]*)"/g;
	}
}
print "$_\n" for sort keys %codes;
