package configs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment override: RELAYD_<SECTION>_<KEY>, the
// key path upper-cased with "." → "_", e.g. RELAYD_RELAY_LOOPS=4 or
// RELAYD_CONNECTOR_CONNECT_TIMEOUT=2s.
const EnvPrefix = "RELAYD_"

// LoadOptions says where configuration comes from. Precedence, lowest first:
// built-in defaults, the file, the environment, the quick flags.
type LoadOptions struct {
	// File is a YAML config file; "" means no file.
	File string
	// Env applies RELAYD_* environment overrides (see EnvPrefix). Listeners
	// cannot be set from the environment. A RELAYD_ variable that names a
	// config section but no key (RELAYD_RELAY_LOPS) is an error; other
	// RELAYD_ variables (RELAYD_CONFIG, test switches) are left alone.
	Env bool
	// Listen is the quick flag --listen: if set, the listeners are replaced
	// by one listener named "default" on this address with Upstreams.
	Listen string
	// Upstreams is the quick flag --upstream; each element may be a comma
	// list. Without Listen it replaces the upstreams of the file's only
	// listener (an error if the file has none or several).
	Upstreams []string
	// Environ replaces os.Environ() (for tests); nil means os.Environ().
	Environ []string
}

// ErrInvalid is matched (errors.Is) by every error that says the config
// itself is wrong — *FieldError and *SyntaxError — as opposed to, say, a
// file that cannot be read. relayd config check exits 2 on it.
var ErrInvalid = errors.New("configs: invalid config")

// SyntaxError is a config file that is not valid YAML (or not a mapping).
type SyntaxError struct {
	File string // as given; "" if unnamed
	Line int    // 1-based; 0 if the parser did not say
	Msg  string
}

func (e *SyntaxError) Error() string {
	file := e.File
	if file == "" {
		file = "config"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", file, e.Msg)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalid }

// Load reads the config from opts, applies defaults, and validates it. On
// failure the error joins (errors.Join) every problem found: *FieldError for
// each bad key or value, or a single *SyntaxError, or a wrapped os error if
// the file cannot be read.
func Load(opts LoadOptions) (*Config, error) {
	if opts.File == "" {
		return load("", nil, false, opts)
	}
	data, err := os.ReadFile(opts.File)
	if err != nil {
		return nil, fmt.Errorf("configs: read config: %w", err)
	}
	return load(opts.File, data, true, opts)
}

// LoadBytes is Load with the file's content given: name is used only in
// error messages, and opts.File is ignored.
func LoadBytes(name string, data []byte, opts LoadOptions) (*Config, error) {
	return load(name, data, true, opts)
}

func load(name string, data []byte, hasFile bool, opts LoadOptions) (*Config, error) {
	v := viper.New()
	if hasFile {
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, newSyntaxError(name, err)
		}
	}

	var errs []*FieldError
	if hasFile {
		errs = append(errs, nullLeaves(data)...)
	}
	if opts.Env {
		environ := opts.Environ
		if environ == nil {
			environ = os.Environ()
		}
		errs = append(errs, applyEnv(v, environ)...)
	}

	raw := v.AllSettings()
	present := map[string]bool{}
	errs = append(errs, prepare(raw, configType, "", present)...)

	cfg := Default()
	errs = append(errs, decode(raw, &cfg)...)

	// check.rise and check.fall absent take their defaults (SetDefaults);
	// written as 0 they are an error, not silently the default.
	for i, l := range cfg.Listeners {
		for key, n := range map[string]int{"check.rise": l.Check.Rise, "check.fall": l.Check.Fall} {
			if k := listenerKey(i, key); present[k] && n == 0 {
				errs = append(errs, &FieldError{Key: k, Value: n, Reason: "must be between 1 and 1000"})
			}
		}
	}
	cfg.SetDefaults()
	for i := range cfg.Listeners {
		if !present[retriesKey(i)] {
			cfg.Listeners[i].Retries = DefaultRetries(len(cfg.Listeners[i].Upstreams))
		}
	}
	cfg.routeDefaults(present)
	errs = append(errs, applyFlags(&cfg, opts, present)...)

	// A value that failed to decode left its field at a default or zero, so
	// what Validate says about that field (or inside it) is noise.
	for _, ve := range cfg.validate() {
		if !slices.ContainsFunc(errs, func(de *FieldError) bool { return related(de.Key, ve.Key) }) {
			errs = append(errs, ve)
		}
	}
	if len(errs) > 0 {
		return nil, joinFieldErrors(errs)
	}
	return &cfg, nil
}

func retriesKey(i int) string { return listenerKey(i, "retries") }

func listenerKey(i int, key string) string { return "listeners[" + strconv.Itoa(i) + "]." + key }

// related reports whether one key path is the other or contains it.
func related(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	return strings.HasPrefix(a, b) && (len(a) == len(b) || a[len(b)] == '.' || a[len(b)] == '[')
}

var yamlLineRE = regexp.MustCompile(`(?m)line (\d+): (.*)$`)

// newSyntaxError turns viper's parse error ("While parsing config: yaml:
// line 3: ...") into file:line: message.
func newSyntaxError(name string, err error) *SyntaxError {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "While parsing config: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	se := &SyntaxError{File: name, Msg: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		se.Line, _ = strconv.Atoi(m[1])
		se.Msg = m[2]
	}
	return se
}

var (
	configType    = reflect.TypeFor[Config]()
	durationType  = reflect.TypeFor[time.Duration]()
	processesType = reflect.TypeFor[ProcessCount]()
)

// fieldKey is a struct field's config key: its mapstructure tag.
func fieldKey(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// isSection reports whether a field is a nested mapping (not a leaf).
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

// isByteSize reports whether an int field accepts sizes such as "32KiB".
// relay.buffer_size and relay.splice_pipe_size do; the set is kept by key so that Config
// keeps plain int fields.
func isByteSize(key string) bool {
	return key == "relay.buffer_size" || key == "relay.splice_pipe_size"
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// prepare walks the raw settings against the Config type before decoding:
// it reports and removes unknown keys (with their full path, also inside
// list elements, which mapstructure's ErrorUnused reports only per struct),
// converts byte sizes, and records which keys were present.
func prepare(m map[string]any, t reflect.Type, prefix string, present map[string]bool) []*FieldError {
	fields := map[string]reflect.StructField{}
	for i := range t.NumField() {
		fields[fieldKey(t.Field(i))] = t.Field(i)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var errs []*FieldError
	for _, k := range keys {
		f, ok := fields[strings.ToLower(k)]
		if !ok {
			errs = append(errs, &FieldError{Key: joinKey(prefix, k), Reason: "unknown key"})
			delete(m, k)
			continue
		}
		key := joinKey(prefix, fieldKey(f))
		present[key] = true
		switch val := m[k]; {
		case isSection(f.Type):
			if sub, ok := asMap(val); ok {
				m[k] = sub
				errs = append(errs, prepare(sub, f.Type, key, present)...)
			}
		case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()):
			if list, ok := val.([]any); ok {
				for i, e := range list {
					if sub, ok := asMap(e); ok {
						list[i] = sub
						errs = append(errs, prepare(sub, f.Type.Elem(), key+"["+strconv.Itoa(i)+"]", present)...)
					}
				}
			}
		case isByteSize(key):
			if s, ok := val.(string); ok {
				n, err := ParseByteSize(s)
				if err != nil {
					errs = append(errs, &FieldError{Key: key, Value: s, Reason: err.Error()})
					delete(m, k)
					continue
				}
				m[k] = n
			}
		}
	}
	return errs
}

// nullLeaves reports keys written with no value ("listen:"). Viper drops
// them, which would silently keep the default — for admin.listen the very
// opposite of what "listen:" looks like it means.
func nullLeaves(data []byte) []*FieldError {
	var doc map[string]any
	if yaml.Unmarshal(data, &doc) != nil {
		return nil // viper parsed it; a difference here is not worth a second report
	}
	var errs []*FieldError
	var walk func(m map[string]any, t reflect.Type, prefix string)
	walk = func(m map[string]any, t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := joinKey(prefix, fieldKey(f))
			for k, val := range m {
				if !strings.EqualFold(k, fieldKey(f)) {
					continue
				}
				switch sub, isMap := asMap(val); {
				case isSection(f.Type):
					if isMap {
						walk(sub, f.Type, key)
					}
				case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()):
					list, _ := val.([]any)
					for j, e := range list {
						if em, ok := asMap(e); ok {
							walk(em, f.Type.Elem(), key+"["+strconv.Itoa(j)+"]")
						}
					}
				case val == nil:
					errs = append(errs, &FieldError{Key: key, Reason: `no value; write "" for an empty string, or leave the key out for the default`})
				}
			}
		}
	}
	walk(doc, configType, "")
	slices.SortFunc(errs, func(a, b *FieldError) int { return strings.Compare(a.Key, b.Key) })
	return errs
}

// asMap accepts the two map shapes a YAML decoder produces.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[fmt.Sprint(k)] = e
		}
		return out, true
	}
	return nil, false
}

// decode copies raw onto cfg with mapstructure. Types are strict (no string
// → int guessing); the hook adds durations and guards number conversions.
func decode(raw map[string]any, cfg *Config) []*FieldError {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:      cfg,
		ErrorUnused: true, // a backstop: prepare already removed unknown keys
		DecodeHook:  decodeHook,
	})
	if err != nil {
		return []*FieldError{{Key: "", Reason: err.Error()}}
	}
	var errs []*FieldError
	collectDecodeErrors(dec.Decode(raw), raw, &errs)
	return errs
}

func collectDecodeErrors(err error, raw map[string]any, out *[]*FieldError) {
	if err == nil {
		return
	}
	var de *mapstructure.DecodeError
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			collectDecodeErrors(inner, raw, out)
		}
		return
	case *mapstructure.DecodeError:
		de = e
	case interface{ Unwrap() error }:
		collectDecodeErrors(e.Unwrap(), raw, out)
		return
	default:
		*out = append(*out, &FieldError{Reason: err.Error()})
		return
	}
	val, _ := lookup(raw, de.Name())
	*out = append(*out, &FieldError{Key: de.Name(), Value: val, Reason: decodeReason(de, val)})
}

// hookError is a reason decodeHook gives; it is shown as is.
type hookError struct{ msg string }

func (e *hookError) Error() string { return e.msg }

// decodeReason says what the key needed in the file's terms ("must be an
// integer, not a string") instead of mapstructure's Go types.
func decodeReason(de *mapstructure.DecodeError, val any) string {
	var he *hookError
	if errors.As(de, &he) {
		return he.msg
	}
	if t := typeAt(de.Name()); t != nil {
		return "must be " + describeType(t) + ", not " + describeValue(val)
	}
	return de.Unwrap().Error()
}

// typeAt is the Go type of the field at a key path, nil if there is none.
func typeAt(path string) reflect.Type {
	t := configType
	for seg := range strings.SplitSeq(path, ".") {
		name, _, _ := strings.Cut(seg, "[")
		if !isSection(t) {
			return nil
		}
		var found bool
		for i := range t.NumField() {
			if f := t.Field(i); fieldKey(f) == name {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return nil
		}
		for range strings.Count(seg, "[") {
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
		}
	}
	return t
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration"
	case isSection(t):
		return "a mapping"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	}
	return t.String()
}

func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "empty"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// decodeHook parses durations ("5s") and rejects numbers that would be
// silently changed: a unitless duration (300 would mean 300ns), a fraction
// for an integer, an integer too large for int.
func decodeHook(_, to reflect.Type, data any) (any, error) {
	if to == processesType {
		if s, ok := data.(string); ok {
			s = strings.TrimSpace(s)
			if s == "auto" {
				return ProcessesAuto, nil
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, &hookError{`not a number of processes or "auto"`}
			}
			return n, nil
		}
	}
	if to == durationType {
		switch d := data.(type) {
		case string:
			dur, err := time.ParseDuration(strings.TrimSpace(d))
			if err != nil {
				return nil, &hookError{`not a duration (write a number and a unit, e.g. "5s", "250ms", "1m30s")`}
			}
			return dur, nil
		case time.Duration:
			return d, nil
		case int, int64, uint64, float64:
			if reflect.ValueOf(d).IsZero() {
				return time.Duration(0), nil
			}
			return nil, &hookError{fmt.Sprintf(`a duration needs a unit, e.g. "%vs"`, d)}
		}
		return data, nil
	}
	if to.Kind() == reflect.Int {
		switch d := data.(type) {
		case float64:
			if d != math.Trunc(d) {
				return nil, &hookError{"must be a whole number"}
			}
			if d >= math.MaxInt64 || d < math.MinInt64 {
				return nil, &hookError{"too large"}
			}
			return int64(d), nil
		case uint64:
			if d > math.MaxInt64 {
				return nil, &hookError{"too large"}
			}
		}
	}
	return data, nil
}

// lookup finds the raw value at a key path such as "listeners[0].upstreams".
func lookup(raw map[string]any, path string) (any, bool) {
	var cur any = raw
	for seg := range strings.SplitSeq(path, ".") {
		name, idx, _ := strings.Cut(seg, "[")
		if name != "" {
			m, ok := asMap(cur)
			if !ok {
				return nil, false
			}
			if cur, ok = m[name]; !ok {
				return nil, false
			}
		}
		for idx != "" {
			var n string
			n, idx, _ = strings.Cut(idx, "]")
			idx = strings.TrimPrefix(idx, "[")
			i, err := strconv.Atoi(n)
			list, ok := cur.([]any)
			if err != nil || !ok || i < 0 || i >= len(list) {
				return nil, false
			}
			cur = list[i]
		}
	}
	return cur, true
}

// envLeaf is a key settable from the environment.
type envLeaf struct {
	key string
	typ reflect.Type
}

// envTable maps RELAYD_* names to keys. Listeners are a list and so have no
// environment names.
func envTable() (leaves map[string]envLeaf, sections []string) {
	leaves = map[string]envLeaf{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := joinKey(prefix, fieldKey(f))
			if isSection(f.Type) {
				walk(f.Type, key)
				continue
			}
			if f.Type.Kind() == reflect.Slice {
				continue
			}
			leaves[envName(key)] = envLeaf{key: key, typ: f.Type}
		}
	}
	walk(configType, "")
	for i := range configType.NumField() {
		sections = append(sections, envName(fieldKey(configType.Field(i))))
	}
	return leaves, sections
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func applyEnv(v *viper.Viper, environ []string) []*FieldError {
	leaves, sections := envTable()
	var errs []*FieldError
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		leaf, ok := leaves[name]
		if !ok {
			for _, s := range sections {
				if name != s && !strings.HasPrefix(name, s+"_") {
					continue
				}
				reason := "unknown environment variable: no such config key"
				if s == envName("listeners") {
					reason = "listeners cannot be set from the environment; use a config file or --listen/--upstream"
				}
				errs = append(errs, &FieldError{Key: name, Value: val, Reason: reason})
				break
			}
			continue
		}
		var conv any = val
		var err error
		switch {
		case leaf.typ == durationType, isByteSize(leaf.key), leaf.typ == processesType:
			// parsed by decode / prepare like a value from the file
		case leaf.typ.Kind() == reflect.Int:
			conv, err = strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				err = errors.New("not an integer")
			}
		case leaf.typ.Kind() == reflect.Bool:
			conv, err = strconv.ParseBool(strings.TrimSpace(val))
			if err != nil {
				err = errors.New("not true or false")
			}
		}
		if err != nil {
			errs = append(errs, &FieldError{Key: leaf.key, Value: val, Reason: "from " + name + ": " + err.Error()})
			continue
		}
		v.Set(leaf.key, conv)
	}
	return errs
}

// SplitList splits each element on commas and drops empty parts, so that
// --upstream a,b --upstream c gives [a b c].
func SplitList(elems []string) []string {
	var out []string
	for _, e := range elems {
		for p := range strings.SplitSeq(e, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func applyFlags(cfg *Config, opts LoadOptions, present map[string]bool) []*FieldError {
	ups := SplitList(opts.Upstreams)
	if opts.Listen != "" {
		cfg.Listeners = []Listener{NewListener("default", opts.Listen, ups...)}
		return nil
	}
	if len(ups) == 0 {
		return nil
	}
	switch n := len(cfg.Listeners); n {
	case 1:
		l := &cfg.Listeners[0]
		l.Upstreams = ups
		if !present[retriesKey(0)] {
			l.Retries = DefaultRetries(len(ups))
		}
		return nil
	case 0:
		return []*FieldError{{Key: "listeners", Reason: "--upstream needs --listen or a config file with one listener"}}
	default:
		return []*FieldError{{Key: "listeners", Reason: fmt.Sprintf("--upstream without --listen is ambiguous: the config has %d listeners", n)}}
	}
}

// ParseByteSize parses a byte count: "32768", "32KiB", "64k", "1MiB", "1m",
// "2GiB". Units are binary whatever their spelling (k = kB = KiB = 1024) and
// case-insensitive; the number must be a whole number. A negative number is
// returned as is for Validate to report against the allowed range.
func ParseByteSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	i := 0
	if i < len(t) && (t[i] == '-' || t[i] == '+') {
		i++
	}
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a size (write bytes or a number and a unit, e.g. 32768, \"32KiB\", \"1MiB\")")
	}
	var mult int64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("unknown size unit %q (use k, KiB, m, MiB, g, GiB)", t[i:])
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, errors.New("too large")
	}
	return int(n * mult), nil
}
