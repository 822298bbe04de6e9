#!/usr/bin/perl
use strict;
use warnings;

# Print "page:line: word" for each word the man pages given name as an
# error code: the .Cm and .Li words (in a list, the .It heads) of a passage
# about codes. A passage starts at a line that says "error codes",
# "Codes:", "codes of" or "error.code", or at DIAGNOSTICS, and ends at the
# next .Sh, .Ss or .Pp, or at the .El that closes the list it began in.
# A word ending in * (ssh_*) stands for codes that begin so.
for my $f (@ARGV) {
	open my $fh, '<', $f or die "$f: $!\n";
	my ($in, $depth, $base) = (0, 0, 0);
	while (my $l = <$fh>) {
		chomp $l;
		$in = 0 if $l =~ /^\.(?:Sh|Ss|Pp)\b/;
		$depth++ if $l =~ /^\.Bl\b/;
		if ($l =~ /^\.El\b/) {
			$depth--;
			$in = 0 if $depth < $base;
		}
		($in, $base) = (1, $depth) if !$in && $l =~ /\b[Ee]rror\ codes\b|
		    ^Codes:|\bcodes\ of$|error\.code|^\.Sh\ DIAGNOSTICS/x;
		next unless $in;
		# in a list only the heads are codes; the bodies speak of fields
		next unless $l =~ ($depth > $base ? qr/^\.It\s+(?:(?:Cm|Li)\s+)?(.*)/
		    : qr/^\.(?:Pq\s+)?(?:Cm|Li)\s+(.*)/);
		my @w = split /\s+/, $1;
		for my $w (@w) {
			last if $w =~ /^(?:Pq|Po|Xr|Fl|No|Ns|Ar|Ql|Dq|Op)$/;
			print "$f:$.: $w\n" if $w =~ /^[a-z][a-z0-9_]*\*?$/;
		}
	}
}
