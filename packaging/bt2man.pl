#!/usr/bin/perl
# SPDX-License-Identifier: GPL-2.0
# Write the man page NAME.bt(8) of one of tools/bpftrace/NAME.bt to stdout, from
# the comment at the head of the tool, so that the page and the tool's own
# usage text are never written twice. The packages run it at build time:
# bt2man.pl VERSION tools/bpftrace/NAME.bt > NAME.bt.8
#
# The head comment is laid out as bpftrace's own tools lay theirs out: the
# tool's name, a tab and what it does (continued on lines indented by tabs),
# then "USAGE: ...", then paragraphs separated by blank lines, ending before
# "Copyright". A paragraph that names NAME_example.txt becomes EXAMPLES.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Roff qw(roff);

my ($version, $file) = @ARGV;
die "usage: bt2man.pl VERSION TOOL.bt\n" unless defined $file;
(my $name = $file) =~ s{.*/}{};

open(my $fh, '<', $file) or die "$file: $!\n";
my (@head, $in);
while (my $line = <$fh>) {
	chomp $line;
	if ($line =~ m{^/\*}) { $in = 1; next; }
	last if $in && $line =~ m{^\s*\*/};
	next unless $in;
	$line =~ s/^ \*\s?//;
	last if $line =~ /^Copyright/;
	push @head, $line;
}
close $fh;
die "$file: no head comment\n" unless @head;

# "NAME.bt<TAB>what it does" and its continuation lines
my $first = shift @head;
$first =~ /^\Q$name\E\s+(.*)$/ or die "$file: the comment does not start with $name\n";
my @what = ($1);
while (@head && $head[0] =~ /^\s+(\S.*)$/) {
	push @what, $1;
	shift @head;
}
my $what = join(' ', @what);
(my $short = $what) =~ s/:.*//;
$short =~ s/\.\s.*//;
$short =~ s/\.$//;

# paragraphs of what is left
my (@paras, $cur);
for my $line (@head) {
	if ($line =~ /^\s*$/) { undef $cur; next; }
	if (!$cur) { $cur = []; push @paras, $cur; }
	(my $l = $line) =~ s/^\s+//;
	push @$cur, $l;
}
my ($usage, @desc, @examples);
for my $p (@paras) {
	my $text = join(' ', @$p);
	if ($text =~ /^USAGE:\s*(\S+)\s*(.*)$/) {
		$usage = $2;
	} elsif ($text =~ /_example\.txt/) {
		push @examples, $text;
	} else {
		push @desc, $text;
	}
}
die "$file: no USAGE line\n" unless defined $usage;

print ".\\\" Generated from $name by packaging/bt2man.pl. Do not edit.\n";
print ".TH " . uc(roff($name)) . " 8 \"\" \"uniballoon $version\" \"System Administration\"\n";
print ".SH NAME\n", roff($name), " \\- ", roff($short), "\n";
print ".SH SYNOPSIS\n.B ", roff($name), "\n";
print ".br\n", roff($usage), "\n" if length $usage;
print ".SH DESCRIPTION\n", roff($what), "\n";
print ".PP\n", roff($_), "\n" for @desc;
if (@examples) {
	print ".SH EXAMPLES\n";
	print ".PP\n", roff($_), "\n" for @examples;
}
print ".SH SEE ALSO\n.BR uniballoon (4),\n.BR bpftrace (8)\n";
