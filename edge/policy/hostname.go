package policy

// ValidHostname reports whether name is a syntactically valid DNS host name
// that relayd is willing to resolve: 1-253 bytes (one trailing dot allowed),
// dot-separated labels of 1-63 letters, digits, '-' or '_' that neither
// start nor end with '-'. It rejects every byte that could smuggle something
// into a log line or a resolver (CR, LF, NUL, spaces, '%', '/', ':'), and
// names whose last label is numeric ("127.1", "2130706433", "0x7f000001"):
// no real TLD is numeric, and libc's inet_aton would turn those into
// addresses behind the policy's back. IP literals are not host names: callers
// parse them with netip.ParseAddr first. It does not allocate.
func ValidHostname(name []byte) bool {
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		l := name[start:i]
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		if i == len(name) && numericLabel(l) {
			return false
		}
		start = i + 1
	}
	return true
}

func numericLabel(l []byte) bool {
	if len(l) > 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		l = l[2:]
		for _, c := range l {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
