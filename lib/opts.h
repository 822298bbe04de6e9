/*
 * opts: a tool's options declared once, in one table, from which the
 * getopt string, the long options, the usage line and the option lines
 * of --help all come (as curl's aliases[] does), so that a letter can
 * never drift between them.
 *
 * The usage line follows STYLE.md: the letters without a value in one
 * bracket, then each option with its value, then the operands; letters
 * sorted a to z, an upper-case letter before its lower-case one, -h left
 * out (every tool has it).
 */
#ifndef LC_OPTS_H
#define LC_OPTS_H

struct lc_opt {
	int		 letter;	/* the short option; 0 ends the table */
	const char	*name;		/* the long option, without "--" */
	const char	*arg;		/* the value's name, as in the man page's
					 * SYNOPSIS; NULL: the option takes none */
	const char	*help;		/* one line for --help (wrapped there);
					 * NULL: another long name for the
					 * letter above, taken but not shown */
};

struct lc_cmd {
	const char	*name;		/* "lc-heal" */
	const char	*summary;	/* the first line of --help */
	const char	*usage;		/* a usage text of its own ("usage: ..."),
					 * or NULL: made from the table */
	const char	*operands;	/* after the options: "[name ...]" */
	const char	*before;	/* --help lines before the options */
	const char	*after;		/* --help lines after them */
	int		 col;		/* where the option texts start; 0:
					 * two columns after the widest option */
	const struct lc_opt *opts;
};

/*
 * getopt_long(3) over cmd's table, the strings made on the first call;
 * a leading '+' in prefix stops at the first operand. One table per
 * process.
 */
int	lc_opts_get(const struct lc_cmd *cmd, const char *prefix, int argc,
	    char *const argv[]);
/* The usage text ("usage: lc-heal [-adfnpqv] ..."), wrapped at 80
 * columns; static storage, kept until it is asked for another table. */
const char *lc_opts_usage(const struct lc_cmd *cmd);
/* --help on stdout: summary, usage, before, the options, after. Exit 0
 * (3 when stdout fails). */
_Noreturn void lc_opts_help(const struct lc_cmd *cmd);

#endif
