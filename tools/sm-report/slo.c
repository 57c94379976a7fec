/*
 * slo.c - the slo: of each target in a sites.yaml (sites.yaml(5)), for
 * the error budget: a percentage, as a number (99.9) or a string
 * ("99.9%"), on a target or under defaults.  sm-schedule validates the
 * same key (tools/sm-schedule/slo.c); this reader only looks for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "sm.h"
#include "report.h"

static int
by_name(const void *a, const void *b)
{
	return target_name_cmp(a, b);
}

static yaml_node_t *
map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    strcmp((const char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* The percentage in node, 0 when absent; -1 when not one. */
static double
slo_value(yaml_node_t *n)
{
	const char *s;
	char *end;
	double v;

	if (n == NULL)
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return -1;
	s = (const char *)n->data.scalar.value;
	v = strtod(s, &end);
	if (end == s)
		return -1;
	if (*end == '%')
		end++;
	if (*end != '\0' || !(v > 0 && v < 100))
		return -1;
	return v;
}

int
slo_read(const char *path, struct report *r, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *targets, *n;
	yaml_node_item_t *it;
	double dflt;
	int rc = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open", path);
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu:%zu: %s", path,
		         parser.problem_mark.line + 1,
		         parser.problem_mark.column + 1,
		         parser.problem ? parser.problem : "invalid YAML");
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	root = yaml_document_get_root_node(&doc);
	dflt = slo_value(map_get(&doc, map_get(&doc, root, "defaults"), "slo"));
	targets = map_get(&doc, root, "targets");
	if (dflt < 0) {
		snprintf(err, errlen, "%s: defaults: slo: not a percentage "
		         "between 0 and 100", path);
		rc = -1;
	}
	if (rc == 0 && targets != NULL && targets->type == YAML_SEQUENCE_NODE)
		for (it = targets->data.sequence.items.start;
		     it < targets->data.sequence.items.top; it++) {
			yaml_node_t *t = yaml_document_get_node(&doc, *it);
			yaml_node_t *name = map_get(&doc, t, "name");
			struct rtarget key, *found;
			double v;

			if (name == NULL)
				name = map_get(&doc, t, "target");
			n = map_get(&doc, t, "slo");
			v = n ? slo_value(n) : dflt;
			if (v < 0) {
				snprintf(err, errlen, "%s:%zu:%zu: slo: not a "
				         "percentage between 0 and 100", path,
				         n->start_mark.line + 1,
				         n->start_mark.column + 1);
				rc = -1;
				break;
			}
			if (name == NULL || name->type != YAML_SCALAR_NODE)
				continue;
			key.name = (char *)name->data.scalar.value;
			found = bsearch(&key, r->targets, r->n, sizeof *r->targets,
			                by_name);
			if (found != NULL)
				found->slo = v;
		}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}
