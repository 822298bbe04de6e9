/*
 * lctime: time and money. RFC 3339 UTC timestamps, durations ("90s", "30m",
 * "2h", "1d"), and the cost of a VM by Linode's billing rule.
 */
#ifndef LC_TIME_H
#define LC_TIME_H

#include <time.h>

/* Now, in seconds since the epoch: the system clock (tests move it from
 * outside with libfaketime). */
time_t	lc_now(void);
/* "2026-11-23T14:23:24Z" into buf (at least 21 bytes). Returns buf. */
char	*lc_time_fmt(time_t t, char *buf, size_t len);
/*
 * Parse RFC 3339 ("...Z", "+hh:mm", fractional seconds) and Linode's
 * zone-less UTC form ("2018-01-01T00:01:01"). 0 on success, -1 if bad.
 */
int	lc_time_parse(const char *s, time_t *t);
/*
 * A duration: a number with an optional unit s, m, h or d (plain number =
 * seconds); sums like "1h30m" are accepted. 0, or -1 if bad or negative.
 */
int	lc_parse_duration(const char *s, long *seconds);
/* "1h30m", "45s", "2d3h" into buf. Returns buf. */
char	*lc_duration_fmt(long seconds, char *buf, size_t len);
/*
 * Cost of a VM present from start to end: within each calendar month (UTC)
 * the hours present are rounded up to whole hours and billed at hourly,
 * capped at monthly (monthly <= 0: no cap). hourly <= 0: 0 (unknown).
 */
double	lc_cost(double hourly, double monthly, time_t start, time_t end);
/* Round a dollar amount to cents. */
double	lc_round_cents(double usd);

#endif
