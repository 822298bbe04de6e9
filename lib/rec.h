/*
 * rec: the record protocol. Input is any run of JSON texts on stdin (NDJSON,
 * pretty objects, arrays unrolled) or operands taken as {"<key>": operand};
 * output is compact NDJSON, one object a line.
 */
#ifndef LC_REC_H
#define LC_REC_H

#include <stdio.h>
#include <jv.h>

struct lc_reader;

/*
 * Operands (argv[0..argc-1]) become {key: operand}; with none, records come
 * from stdin. No operands and a tty on stdin: NULL (the tool prints usage).
 */
struct lc_reader *lc_reader_open(int argc, char **argv, const char *key);
/* A reader over an open stream (for tests and tools that read files). */
struct lc_reader *lc_reader_fopen(FILE *fp);
/*
 * Next record into *rec (owned): 1, or 0 at the end. Malformed JSON is
 * fatal (exit 3, naming the byte offset). A value that is not an object is
 * handed back as an error record {"error":{"code":"not_object",...}}.
 */
int	lc_reader_next(struct lc_reader *r, jv *rec);
void	lc_reader_close(struct lc_reader *r);

/*
 * Parse every JSON text of a string into an array of values (unrolling
 * top-level arrays). Returns owned array, or an error value that names the
 * byte offset.
 */
jv	lc_parse_texts(const char *data, size_t len);

/* Write one record as a compact line on stdout; consumes. Counts errors. */
void	lc_emit(jv rec);
/* Bulk output (a listing): records are not flushed one by one. */
void	lc_emit_buffered(int on);
/* Write one record (consumed) as a line to fp, counting nothing: 1 if it
 * carries "error", else 0. For a tool that renders in threads and adds the
 * failures up with lc_note_failure. */
int	lc_emit_to(FILE *fp, jv rec);
/* Count a failure that has no record of its own (exit status 1). */
void	lc_note_failure(void);
/* Checks stdout, closes the reader; returns the exit status 0, 1 or 3. */
int	lc_finish(struct lc_reader *r);

/* Compact JSON text of v; borrows v; returns malloc'd string. */
char	*lc_json(jv v);

#endif
