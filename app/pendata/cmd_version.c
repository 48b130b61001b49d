/*
 * cmd_version.c — `pendata version`.
 */
#include "cli.h"

int cmd_version(cli *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (c->json)
        printf("{\"version\":\"%s\"}\n", PD_VERSION_STRING);
    else
        printf("pendata %s\n", PD_VERSION_STRING);
    return CLI_OK;
}
