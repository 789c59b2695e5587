/*
 * cli_config.c: configuration files (`sparrow train --config run.json`), parsed with
 * Debian's libcjson.
 *
 * A configuration file is one JSON object whose keys are the command's long options
 * without the leading "--" and whose values are what the option would take:
 *   {"train": "data/train.txt", "hidden": [256, 128], "lr": 0.001, "dense": false}
 *   - an option with a value: a string, a number, or (for lists such as --hidden) an
 *     array of numbers, joined with commas; integers above 2^53 (a --seed) must be
 *     strings, since JSON numbers are doubles;
 *   - a flag (--dense, --quiet): true or false;
 *   - null: the option is not given (its default applies).
 * The file becomes command-line options placed before the real ones, so that the same
 * parser checks both and an option given on the command line wins over the file.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_argv_free(config_argv *c) {
    for (int i = 0; i < c->argc; i++) free(c->argv[i]);
    free(c->argv);
    c->argv = NULL;
    c->argc = 0;
}

/* Appends a copy of text; 0 on success. */
static int push(config_argv *c, const char *text) {
    char **grown = realloc(c->argv, (size_t)(c->argc + 2) * sizeof *grown);
    if (!grown) return -1;
    c->argv = grown;
    size_t n = strlen(text) + 1;
    if (!(c->argv[c->argc] = malloc(n))) return -1;
    memcpy(c->argv[c->argc++], text, n);
    c->argv[c->argc] = NULL;
    return 0;
}

/* A JSON number as the option text: integers without a decimal point. */
static void number_text(char *buf, size_t n, double v) {
    if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.17g", v);
}

int config_to_argv(const char *cmd, const char *path, const struct option *opts,
                   config_argv *out) {
    out->argc = 0;
    out->argv = NULL;
    size_t len;
    int rc;
    /* NUL-free, so cJSON sees the whole text */
    char *text = read_text_file(cmd, path, (size_t)64 << 20, &len, &rc);
    if (!text) return rc;
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        /* cJSON says where it stopped: turn that into a line number. */
        const char *at = cJSON_GetErrorPtr();
        long line = 1;
        for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
        char near[24] = "";
        if (at) snprintf(near, sizeof near, "%.20s", at);
        for (char *p = near; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        rc = usage_error(cmd, "%s:%ld: not valid JSON (near '%s')", path, line, near);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = usage_error(cmd, "%s: must hold one JSON object {\"option\": value, ...}", path);
        goto done;
    }
    for (cJSON *item = root->child; item; item = item->next) {
        const char *key = item->string;
        const struct option *o = opts;
        while (o->name && strcmp(o->name, key)) o++;
        if (!o->name || !strcmp(key, "config") || !strcmp(key, "print-config") ||
            !strcmp(key, "help")) {
            rc = usage_error(cmd, "%s: \"%s\" is not an option of 'sparrow %s' that a "
                                  "configuration file can set (keys are the long options "
                                  "without --; see 'sparrow %s --help')",
                             path, key, cmd, cmd);
            goto done;
        }
        for (cJSON *prev = root->child; prev != item; prev = prev->next)
            if (!strcmp(prev->string, key)) {
                rc = usage_error(cmd, "%s: \"%s\" is given twice", path, key);
                goto done;
            }
        if (cJSON_IsNull(item)) continue;
        char flag[128], value[4096];
        snprintf(flag, sizeof flag, "--%s", key);
        if (o->has_arg == no_argument) {
            if (!cJSON_IsBool(item)) {
                rc = usage_error(cmd, "%s: \"%s\" is a flag: true, false or null", path, key);
                goto done;
            }
            if (cJSON_IsTrue(item) && push(out, flag)) goto oom;
            continue;
        }
        if (cJSON_IsString(item)) {
            if (push(out, flag) || push(out, item->valuestring)) goto oom;
            continue;
        } else if (cJSON_IsNumber(item)) {
            number_text(value, sizeof value, item->valuedouble);
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) > 0) {
            size_t n = 0;
            value[0] = '\0';
            for (cJSON *e = item->child; e; e = e->next) {
                if (!cJSON_IsNumber(e)) {
                    rc = usage_error(cmd, "%s: \"%s\": a list must hold numbers only", path, key);
                    goto done;
                }
                char num[64];
                number_text(num, sizeof num, e->valuedouble);
                n += (size_t)snprintf(value + n, sizeof value - n, "%s%s", n ? "," : "", num);
                if (n >= sizeof value) {
                    rc = usage_error(cmd, "%s: \"%s\": list too long", path, key);
                    goto done;
                }
            }
        } else {
            rc = usage_error(cmd, "%s: \"%s\" takes a value: a string, a number, a list of "
                                  "numbers or null",
                             path, key);
            goto done;
        }
        if (push(out, flag) || push(out, value)) goto oom;
    }
    goto done;
oom:
    fprintf(stderr, "sparrow %s: out of memory reading %s\n", cmd, path);
    rc = EXIT_INTERNAL;
done:
    if (rc) config_argv_free(out);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int config_merge_argv(int argc, char **argv, const config_argv *cfg, int *argc_out,
                      char ***argv_out) {
    char **merged = malloc((size_t)(argc + cfg->argc + 1) * sizeof *merged);
    if (!merged) return -1;
    merged[0] = argv[0];
    for (int i = 0; i < cfg->argc; i++) merged[1 + i] = cfg->argv[i];
    for (int i = 1; i < argc; i++) merged[cfg->argc + i] = argv[i];
    merged[argc + cfg->argc] = NULL;
    *argc_out = argc + cfg->argc;
    *argv_out = merged;
    return 0;
}

/* ------------------------------------------------------------------ writing */

cJSON *config_object(void) {
    return cJSON_CreateObject();
}

void config_put_string(cJSON *obj, const char *key, const char *value) {
    if (value) cJSON_AddStringToObject(obj, key, value);
    else cJSON_AddNullToObject(obj, key);
}

/* A float option printed as the shortest decimal that reads back as the same float:
 * 0.001, not 0.0010000000474974513; 9 digits always suffice. */
void config_put_float(cJSON *obj, const char *key, double value) {
    float f = (float)value;
    char text[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)f);
        if (strtof(text, NULL) == f) break;
    }
    cJSON_AddNumberToObject(obj, key, strtod(text, NULL));
}

void config_put_double(cJSON *obj, const char *key, double value) {
    cJSON_AddNumberToObject(obj, key, value);
}

/* Integers above 2^53 do not survive a JSON number: those are written as strings. */
void config_put_int(cJSON *obj, const char *key, int64_t value) {
    if (value > -9007199254740992LL && value < 9007199254740992LL) {
        cJSON_AddNumberToObject(obj, key, (double)value);
    } else {
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)value);
        cJSON_AddStringToObject(obj, key, text);
    }
}

void config_put_u64(cJSON *obj, const char *key, uint64_t value) {
    if (value < 9007199254740992ULL) {
        cJSON_AddNumberToObject(obj, key, (double)value);
    } else {
        char text[32];
        snprintf(text, sizeof text, "%llu", (unsigned long long)value);
        cJSON_AddStringToObject(obj, key, text);
    }
}

void config_put_int_list(cJSON *obj, const char *key, const int64_t *values, int n) {
    cJSON *list = cJSON_AddArrayToObject(obj, key);
    for (int i = 0; list && i < n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateNumber((double)values[i]));
}

void config_put_object(cJSON *obj, const char *key, cJSON *value) {
    cJSON_AddItemToObject(obj, key, value);
}

void config_put_bool(cJSON *obj, const char *key, int value) {
    cJSON_AddBoolToObject(obj, key, value != 0);
}

void config_put_null(cJSON *obj, const char *key) {
    cJSON_AddNullToObject(obj, key);
}

int config_write(FILE *f, const cJSON *obj, int pretty) {
    char *text = pretty ? cJSON_Print(obj) : cJSON_PrintUnformatted(obj);
    if (!text) return -1;
    /* cJSON indents with tabs and writes ":\t": two spaces and ": " read better. Tabs
     * inside strings are escaped (\t), so every raw tab is layout. */
    for (const char *p = text; *p; p++) {
        if (*p != '\t') fputc(*p, f);
        else fputs(p > text && p[-1] == ':' ? " " : "  ", f);
    }
    free(text);
    return 0;
}

void config_free(cJSON *obj) {
    cJSON_Delete(obj);
}
