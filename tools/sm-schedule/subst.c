/* subst.c - ${NAME} references in configuration strings */
#include "subst.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

char *
subst_env(const char *s, size_t len, size_t *outlen, size_t *bad_off,
          char **why)
{
	size_t cap = len + 1, n = 0;
	char *out = xmalloc(cap);

	for (size_t i = 0; i < len;) {
		const char *add = s + i;
		size_t addlen = 1;

		if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' &&
		    s[i + 2] == '{') {
			add = "${";
			addlen = 2;
			i += 3;
		} else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
			size_t j = i + 2, end = 0;
			const char *dflt = NULL, *close;
			char *name;

			while (j < len && (isalnum((unsigned char)s[j]) ||
			                   s[j] == '_'))
				j++;
			if (j + 1 < len && s[j] == ':' && s[j + 1] == '-' &&
			    (close = memchr(s + j + 2, '}', len - j - 2))) {
				dflt = s + j + 2; /* ${NAME:-default} */
				end = (size_t)(close - s);
			} else if (j < len && s[j] == '}') {
				end = j;
			}
			if (j == i + 2 || !end || isdigit((unsigned char)s[i + 2])) {
				*bad_off = i;
				*why = xstrdup("malformed variable reference "
				               "(write ${NAME} or ${NAME:-default}, "
				               "or $${ for a literal ${)");
				free(out);
				return NULL;
			}
			name = xstrndup(s + i + 2, j - i - 2);
			add = getenv(name);
			if (dflt && (!add || !*add)) {
				add = dflt;
				addlen = end - (size_t)(dflt - s);
			} else if (add) {
				addlen = strlen(add);
			} else {
				*bad_off = i;
				*why = xasprintf("environment variable %s is "
				                 "not set", name);
				free(name);
				free(out);
				return NULL;
			}
			free(name);
			i = end + 1;
		} else {
			i++;
		}
		if (n + addlen + 1 > cap) {
			cap = (n + addlen + 1) * 2;
			out = xrealloc(out, cap);
		}
		memcpy(out + n, add, addlen);
		n += addlen;
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}
