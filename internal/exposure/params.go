package exposure

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// ParamsName is the ConfigMap, in every namespace a CEL-mode baseline
// governs, that holds the admission params: what protects each attachment
// level there, as the engine resolves it.
const ParamsName = "apiwarden-coverage"

// canonicalGroup is the group of each kind a policy may target; a targetRef
// with another group matches no object the engine evaluates.
var canonicalGroup = map[string]string{
	"HTTPRoute": GroupGateway, "GRPCRoute": GroupGateway, "Gateway": GroupGateway,
	"Ingress": GroupNetworking, "Service": GroupCore,
}

// levelID names an attachment level in the params: kind, namespace, name
// and section joined by "_", which no Kubernetes name contains.
func levelID(key TargetKey, section string) string {
	return key.Kind + "_" + key.Namespace + "_" + key.Name + "_" + section
}

// ParamsSeparator separates the fields of a level in the params.
const ParamsSeparator = "\x1f"

// RecordSeparator starts each record of the GuardKey value (and ends the
// value).
const RecordSeparator = "\x1e"

// GenerationsKey is the params key listing, as name=generation pairs
// separated by commas, the generation of each APIPolicy of the namespace
// that the params reflect.
const GenerationsKey = "generations"

// LevelsKey is the params key that holds every level of the namespace, one
// record per level: RecordSeparator, the level id, ParamsSeparator and the
// level's seven fields separated by ParamsSeparator; the value ends with
// RecordSeparator.
const LevelsKey = "levels"

// maxUnshardedFast is the longest fast list kept under one key. The
// apiserver's CEL cost tracking counts the runes of a string each time an
// expression searches it, so a longer list is split by the last character
// of the level's object name (FastKey + "." + that character): each search
// then reads one shard, and the few keys added cost little to convert.
const maxUnshardedFast = 2048

// shardOf is the last character of an object name, which names the
// level's fast-list shard; a name no object can have (one that does not end
// in a lower-case letter or digit, as DNS names do) gets no fast entry and
// takes the full check.
func shardOf(name string) (byte, bool) {
	if name == "" {
		return 0, false
	}
	c := name[len(name)-1]
	return c, (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
}

// FastKey is the params key that lists, for baseline b's requirements as
// they are now, every level of the namespace with an Enforce-mode winner:
// "c:" and the level id when the winner alone meets them all (complete),
// "i:" and the id otherwise, each record followed by RecordSeparator (and
// the value starts with one). The compiled policies' fast path
// (matchConditions) admits an object whose every scope starts at a
// complete level without evaluating anything else. The key names a digest
// of the requirements, so that a policy compiled for new requirements never
// reads a list computed for the old ones: until the params catch up, its
// fast path finds nothing and the full check runs.
func FastKey(b *apiwardenv1alpha1.APIBaseline) string {
	data, _ := json.Marshal(requirements(b).BaselineRequirements)
	sum := sha256.Sum256(append([]byte(b.Name+"\x00"), data...))
	return "fast." + hex.EncodeToString(sum[:8])
}

// Params computes the admission params of namespace ns from every policy of
// the cluster: for each level an object of ns may be protected at (the
// targets of ns's policies, and Gateways of any namespace, which routes of
// ns may attach to), the winning Enforce-mode policy's protections and the
// DryRun policies there, exactly as the engine's resolution sees them
// (winner). The compiled ValidatingAdmissionPolicies (AdmissionPolicy)
// combine levels field by field as resolve does.
//
// LevelsKey holds one record per level, <kind>_<namespace>_<name>_<section>
// followed by seven fields, each empty when the level does not set it and
// otherwise "+" and the value: TLS (<minVersion>|<httpRedirect>),
// authentication methods (comma-separated, possibly none), the policy that
// sets authentication, rate limits (<requests>:<unit>:<by>:<per second>,
// ';'-separated), maxBodyBytes (empty when the request limits set none),
// CORS (1 or 0 for credentials, then each allowed origin, '\n'-separated)
// and the DryRun policies (comma-separated). A FastKey per baseline of
// snap lists which levels meet that baseline's requirements on their own,
// for the compiled policies' fast path. GenerationsKey lists the policies'
// generations, for the APIPolicy controller.
//
// Why one value rather than a key per level: the apiserver converts the
// whole params object to a map on every admission, once for the
// validation and once more for the message, and that conversion grows with
// the number of keys (1.2 ms per evaluation for 1,000 keys, measured by
// BenchmarkAdmissionPolicy); finding a record in one string is a substring
// search.
func Params(snap Snapshot, policies []*apiwardenv1alpha1.APIPolicy, ns string) map[string]string {
	type lv struct {
		key     TargetKey
		section string
		id      string
	}
	seen := map[lv]bool{}
	var levels []lv
	for _, p := range policies {
		for _, ref := range p.Spec.TargetRefs {
			if g, ok := canonicalGroup[ref.Kind]; !ok || g != ref.Group {
				continue
			}
			if p.Namespace != ns && ref.Kind != "Gateway" {
				continue
			}
			key := TargetKey{Group: ref.Group, Kind: ref.Kind, Namespace: p.Namespace, Name: ref.Name}
			candidates := []lv{{key: key}}
			if ref.SectionName != nil && *ref.SectionName != "" {
				candidates = append(candidates, lv{key: key, section: *ref.SectionName})
			}
			for _, c := range candidates {
				if !seen[c] {
					seen[c] = true
					c.id = levelID(c.key, c.section)
					levels = append(levels, c)
				}
			}
		}
	}
	// The same policies give the same params whatever order they come in
	// (an informer's list has none), so an unchanged namespace is never
	// written again.
	slices.SortFunc(levels, func(a, b lv) int { return strings.Compare(a.id, b.id) })
	var b strings.Builder
	b.WriteString(RecordSeparator)
	baselines := snap.Baselines()
	// fast[i] maps the last character of a level's object name to the
	// records of baseline i there.
	fast := make([]map[byte]*strings.Builder, len(baselines))
	reqs := make([]requirementSet, len(baselines))
	for i, bl := range baselines {
		reqs[i] = requirements(bl)
		fast[i] = map[byte]*strings.Builder{}
	}
	for _, l := range levels {
		w, dry := winner(snap, level{key: l.key, section: l.section}, nil)
		if w == nil && len(dry) == 0 {
			continue
		}
		id := l.id
		if last, ok := shardOf(l.key.Name); ok && w != nil {
			for i := range baselines {
				mark := "i:"
				if complete(w, reqs[i]) {
					mark = "c:"
				}
				sb := fast[i][last]
				if sb == nil {
					sb = &strings.Builder{}
					fast[i][last] = sb
				}
				sb.WriteString(mark + id + RecordSeparator)
			}
		}
		var f [7]string
		set := func(i int, v string) { f[i] = "+" + v }
		if len(dry) > 0 {
			dry = slices.Clone(dry)
			slices.Sort(dry) // in name order, whatever order the policies came in
			set(6, strings.Join(dry, ","))
		}
		if w != nil {
			s := &w.Spec
			if s.TLS != nil {
				set(0, string(s.TLS.MinVersion)+"|"+string(s.TLS.HTTPRedirect))
			}
			if s.Authentication != nil {
				var buf [3]apiwardenv1alpha1.AuthenticationMethod
				ms := methods(s.Authentication, &buf)
				names := make([]string, len(ms))
				for i, m := range ms {
					names[i] = string(m)
				}
				set(1, strings.Join(names, ","))
				set(2, w.Name)
			}
			if s.RateLimit != nil && len(s.RateLimit.Limits) > 0 {
				limits := make([]string, len(s.RateLimit.Limits))
				for i, l := range s.RateLimit.Limits {
					limits[i] = strconv.Itoa(int(l.Requests)) + ":" + strings.ToLower(string(l.Unit)) + ":" + string(l.By) + ":" +
						strconv.FormatFloat(l.Rate().PerSecond(), 'g', -1, 64)
				}
				set(3, strings.Join(limits, ";"))
			}
			if s.Request != nil {
				v := ""
				if s.Request.MaxBodyBytes != nil {
					v = strconv.FormatInt(*s.Request.MaxBodyBytes, 10)
				}
				set(4, v)
			}
			if s.CORS != nil {
				v := "0"
				if s.CORS.AllowCredentials != nil && *s.CORS.AllowCredentials {
					v = "1"
				}
				for _, o := range s.CORS.AllowOrigins {
					v += "\n" + o
				}
				set(5, v)
			}
		}
		b.WriteString(id)
		b.WriteString(ParamsSeparator)
		b.WriteString(strings.Join(f[:], ParamsSeparator))
		b.WriteString(RecordSeparator)
	}
	out := map[string]string{LevelsKey: b.String()}
	for i, bl := range baselines {
		total := 0
		for _, sb := range fast[i] {
			total += sb.Len()
		}
		if total <= maxUnshardedFast {
			var all strings.Builder
			all.WriteString(RecordSeparator)
			for _, c := range slices.Sorted(maps.Keys(fast[i])) {
				all.WriteString(fast[i][c].String())
			}
			out[FastKey(bl)] = all.String()
			continue
		}
		for c, sb := range fast[i] {
			out[FastKey(bl)+"."+string(c)] = RecordSeparator + sb.String()
		}
	}
	var gens []string
	for _, p := range policies {
		if p.Namespace == ns {
			gens = append(gens, p.Name+"="+strconv.FormatInt(p.Generation, 10))
		}
	}
	sort.Strings(gens)
	out[GenerationsKey] = strings.Join(gens, ",")
	return out
}

// ParamsGeneration returns the generation of policy name that params
// reflect, or "" when they do not list it.
func ParamsGeneration(params map[string]string, name string) string {
	for _, g := range strings.Split(params[GenerationsKey], ",") {
		if n, gen, ok := strings.Cut(g, "="); ok && n == name {
			return gen
		}
	}
	return ""
}

// LevelFields returns the seven fields the params hold for the level of
// kind, namespace, name and section (see Params), and whether they list it.
func LevelFields(params map[string]string, kind, namespace, name, section string) ([]string, bool) {
	key := RecordSeparator + levelID(TargetKey{Kind: kind, Namespace: namespace, Name: name}, section) + ParamsSeparator
	_, rest, ok := strings.Cut(params[LevelsKey], key)
	if !ok {
		return nil, false
	}
	rec, _, _ := strings.Cut(rest, RecordSeparator)
	return strings.Split(rec, ParamsSeparator), true
}
