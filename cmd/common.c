/* common.c - usage, version and output checks shared by the commands. */
#include <err.h>
#include <stdlib.h>
#include <unistd.h>

#include "cmd.h"

void
cmd_usage(const char *usage, int status)
{
	fputs(usage, status == 0 ? stdout : stderr);
	exit(status == 0 ? cmd_finish(0) : status);
}

void
cmd_version(const char *prog)
{
	printf("%s %s\n", prog, VLM_VERSION);
	exit(cmd_finish(0));
}

void
cmd_binary_out(FILE *f, int force)
{
	if (!force && isatty(fileno(f)))
		errx(2, "refusing to write binary data to a terminal "
		    "(redirect it, or use -f)");
}

int
cmd_finish(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		warn("<stdout>");
		return 1;
	}
	return status;
}
