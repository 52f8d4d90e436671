/* error.c - one-line error messages recorded per thread, never printed. */
#include <stdarg.h>
#include <string.h>

#include "base/base.h"

static _Thread_local char errbuf[1024];

/* The message may quote the previous one (vlm_errmsg() as an argument):
 * format into a scratch buffer first, then copy. */
int
vlm_error(const char *fmt, ...)
{
	char tmp[sizeof(errbuf)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(errbuf, tmp, sizeof(errbuf));
	return -1;
}

const char *
vlm_errmsg(void)
{
	return errbuf;
}
