# SPDX-License-Identifier: GPL-2.0
# Shared by the man page generators (abi2man.pl, bt2man.pl): text to roff.
package Roff;
use strict;
use warnings;
use Exporter 'import';
our @EXPORT_OK = ('roff');

# Escape backslashes and hyphens, and a line that would start a request.
sub roff {
	my ($s) = @_;
	$s =~ s/\\/\\e/g;
	$s =~ s/-/\\-/g;
	$s =~ s/^([.'])/\\&$1/;
	return $s;
}

1;
