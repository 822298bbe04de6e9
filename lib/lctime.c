/* lctime: timestamps, durations and Linode's billing arithmetic. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lctime.h"

/* timegm is not POSIX: days from civil date, as in Howard Hinnant's note. */
static time_t
utc_mktime(int y, int mon, int d, int h, int mi, int s)
{
	long long era, yoe, doy, doe, days;

	y -= mon <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	days = era * 146097 + doe - 719468;
	return (time_t)(days * 86400 + h * 3600 + mi * 60 + s);
}

time_t
lc_now(void)
{
	return time(NULL);
}

char *
lc_time_fmt(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

int
lc_time_parse(const char *s, time_t *t)
{
	int y, mo, d, h, mi, sec, n = 0, oh, om;
	const char *p;
	time_t v;

	if (s == NULL || sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n",
	    &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	v = utc_mktime(y, mo, d, h, mi, sec);
	p = s + n;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if (*p == 'Z' || *p == 'z')
		p++;
	else if ((*p == '+' || *p == '-') &&
	    sscanf(p + 1, "%2d:%2d", &oh, &om) == 2) {
		v -= (*p == '+' ? 1 : -1) * (oh * 3600 + om * 60);
		p += 6;
	}
	if (*p != '\0')
		return -1;
	*t = v;
	return 0;
}

int
lc_parse_duration(const char *s, long *seconds)
{
	long total = 0;
	int parts = 0;

	if (s == NULL)
		return -1;
	while (*s != '\0') {
		char *end;
		long v, mul;

		if (!isdigit((unsigned char)*s))
			return -1;
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno != 0 || v < 0)
			return -1;
		switch (*end) {
		case '\0': mul = 1; break;
		case 's': mul = 1; end++; break;
		case 'm': mul = 60; end++; break;
		case 'h': mul = 3600; end++; break;
		case 'd': mul = 86400; end++; break;
		default: return -1;
		}
		if (v > (long)(365L * 86400 * 100) / mul)
			return -1;
		total += v * mul;
		s = end;
		parts++;
	}
	if (parts == 0)
		return -1;
	*seconds = total;
	return 0;
}

char *
lc_duration_fmt(long s, char *buf, size_t len)
{
	long d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;

	if (s < 0)
		s = 0;
	if (d > 0)
		snprintf(buf, len, "%ldd%ldh", d, h);
	else if (h > 0)
		snprintf(buf, len, "%ldh%02ldm", h, m);
	else if (m > 0)
		snprintf(buf, len, "%ldm%02lds", m, s % 60);
	else
		snprintf(buf, len, "%lds", s % 60);
	return buf;
}

double
lc_round_cents(double usd)
{
	return round(usd * 100.0) / 100.0;
}

double
lc_cost(double hourly, double monthly, time_t start, time_t end)
{
	double total = 0;
	time_t from = start;

	if (hourly <= 0 || end <= start)
		return 0;
	while (from < end) {
		struct tm tm;
		time_t next, to;
		double hours, c;

		gmtime_r(&from, &tm);
		next = utc_mktime(tm.tm_year + 1900 + (tm.tm_mon == 11),
		    tm.tm_mon == 11 ? 1 : tm.tm_mon + 2, 1, 0, 0, 0);
		to = end < next ? end : next;
		hours = ceil((double)(to - from) / 3600.0);
		c = hours * hourly;
		if (monthly > 0 && c > monthly)
			c = monthly;
		total += c;
		from = to;
	}
	return lc_round_cents(total);
}
