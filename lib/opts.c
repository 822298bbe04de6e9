/* opts: one option table, many outputs (see opts.h). */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc.h"
#include "opts.h"

#define MAXOPTS	64	/* options in one table */
#define WIDTH	79	/* --help and usage lines end before column 80 */

static const struct lc_cmd *made;	/* the table the strings are from */
static char shortopts[2 + 2 * MAXOPTS + 1];
static struct option longopts[MAXOPTS + 1];

/* The getopt string and long options of cmd, made once. */
static void
make(const struct lc_cmd *cmd, const char *prefix)
{
	const struct lc_opt *o;
	size_t n, i = 0;

	if (made == cmd)
		return;
	made = cmd;
	n = strlen(prefix) < 2 ? strlen(prefix) : 2;
	memcpy(shortopts, prefix, n);
	for (o = cmd->opts; o->letter != 0 && i < MAXOPTS; o++, i++) {
		if (o->help != NULL) {	/* an alias has its letter already */
			shortopts[n++] = (char)o->letter;
			if (o->arg != NULL)
				shortopts[n++] = ':';
		}
		longopts[i].name = o->name;
		longopts[i].has_arg = o->arg != NULL ? required_argument :
		    no_argument;
		longopts[i].flag = NULL;
		longopts[i].val = o->letter;
	}
	shortopts[n] = '\0';
	memset(&longopts[i], 0, sizeof(longopts[i]));
}

int
lc_opts_get(const struct lc_cmd *cmd, const char *prefix, int argc,
    char *const argv[])
{
	make(cmd, prefix != NULL ? prefix : "");
	return getopt_long(argc, argv, shortopts, longopts, NULL);
}

/* a to z, an upper-case letter before its lower-case one. */
static int
letter_cmp(const void *a, const void *b)
{
	int x = (*(const struct lc_opt *const *)a)->letter;
	int y = (*(const struct lc_opt *const *)b)->letter;
	int kx = tolower(x) * 2 + (islower(x) != 0);
	int ky = tolower(y) * 2 + (islower(y) != 0);

	return kx - ky;
}

/* Append word to b, on a new line indented to indent when it would pass
 * WIDTH; *pos is the column the line has reached. */
static void
add_word(struct lc_buf *b, const char *word, size_t len, size_t indent,
    size_t *pos)
{
	if (*pos > indent && *pos + 1 + len > WIDTH) {
		lc_buf_printf(b, "\n%*s", (int)indent, "");
		*pos = indent;
	} else if (*pos > indent) {
		lc_buf_addstr(b, " ");
		(*pos)++;
	}
	lc_buf_add(b, word, len);
	*pos += len;
}

const char *
lc_opts_usage(const struct lc_cmd *cmd)
{
	static struct lc_buf b = LC_BUF_INIT;
	static const struct lc_cmd *of;	/* the table b was made from */
	const struct lc_opt *sorted[MAXOPTS];
	char word[128];
	size_t n = 0, i, pos, indent;
	int len;

	if (cmd->usage != NULL)
		return cmd->usage;
	if (of == cmd)
		return b.data;
	of = cmd;
	b.len = 0;
	for (i = n = 0; cmd->opts[i].letter != 0 && n < MAXOPTS; i++)
		if (cmd->opts[i].help != NULL)
			sorted[n++] = &cmd->opts[i];
	qsort(sorted, n, sizeof(sorted[0]), letter_cmp);
	lc_buf_printf(&b, "usage: %s ", cmd->name);
	indent = pos = b.len;
	/* The letters without a value, in one bracket. */
	len = snprintf(word, sizeof(word), "[-");
	for (i = 0; i < n; i++)
		if (sorted[i]->arg == NULL && sorted[i]->letter != 'h' &&
		    len < (int)sizeof(word) - 2)
			word[len++] = (char)sorted[i]->letter;
	word[len++] = ']';
	if (len > 3)
		add_word(&b, word, (size_t)len, indent, &pos);
	for (i = 0; i < n; i++) {
		if (sorted[i]->arg == NULL)
			continue;
		len = snprintf(word, sizeof(word), "[-%c %s]",
		    sorted[i]->letter, sorted[i]->arg);
		if (len > 0 && len < (int)sizeof(word))
			add_word(&b, word, (size_t)len, indent, &pos);
	}
	if (cmd->operands != NULL)
		add_word(&b, cmd->operands, strlen(cmd->operands), indent,
		    &pos);
	if (b.data[b.len - 1] == ' ')	/* no options, no operands */
		b.data[--b.len] = '\0';
	return b.data;
}

/* "-t, --timeout seconds": its width. */
static size_t
head_len(const struct lc_opt *o)
{
	return 6 + strlen(o->name) + (o->arg ? 1 + strlen(o->arg) : 0);
}

_Noreturn void
lc_opts_help(const struct lc_cmd *cmd)
{
	struct lc_buf b = LC_BUF_INIT;
	const struct lc_opt *o;
	const char *w, *e;
	size_t col = 0, pos;

	for (o = cmd->opts; o->letter != 0; o++)
		if (o->help != NULL && head_len(o) + 4 > col)
			col = head_len(o) + 4;
	if (cmd->col > 0)
		col = (size_t)cmd->col;
	lc_buf_printf(&b, "%s\n\n%s\n\n%s", cmd->summary,
	    lc_opts_usage(cmd), cmd->before ? cmd->before : "");
	for (o = cmd->opts; o->letter != 0; o++) {
		if (o->help == NULL)
			continue;
		lc_buf_printf(&b, "  -%c, --%s%s%s", o->letter, o->name,
		    o->arg ? " " : "", o->arg ? o->arg : "");
		pos = 2 + head_len(o);
		if (pos + 1 > col) {
			lc_buf_addstr(&b, "\n");
			pos = 0;
		}
		lc_buf_printf(&b, "%*s", (int)(col - pos), "");
		pos = col;
		for (w = o->help; *w != '\0'; w = *e ? e + 1 : e) {
			e = w + strcspn(w, " ");
			add_word(&b, w, (size_t)(e - w), col, &pos);
		}
		lc_buf_addstr(&b, "\n");
	}
	if (cmd->after != NULL)
		lc_buf_printf(&b, "\n%s", cmd->after);
	lc_help(b.data);
}
