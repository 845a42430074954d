// Package names checks the names users give to providers and sandboxes.
package names

import "fmt"

// MaxLen is the longest name accepted.
const MaxLen = 63

// Check reports whether s is a valid name for a thing of the given kind
// ("provider", "sandbox"): 1 to 63 characters of lower-case letters, digits,
// '-', '_' and '.', starting with a letter or digit. Such a name is safe in
// a file name, an environment variable's value, a DNS label-like context and
// a table column.
func Check(kind, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("%s name is %d characters long; the limit is %d", kind, len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return fmt.Errorf("%s name %q: use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit", kind, s)
		}
	}
	return nil
}
