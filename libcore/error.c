/* error.c - one-line error messages recorded per thread, never printed. */
#include <stdarg.h>

#include "vlm.h"

static _Thread_local char errbuf[1024];

int
vlm_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return -1;
}

const char *
vlm_errmsg(void)
{
	return errbuf;
}
