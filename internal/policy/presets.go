package policy

import (
	"fmt"

	"github.com/cordon-dev/cordon/internal/provider"
)

// presetEntry is one destination the balanced preset allows, with what it
// is for (shown by "policy ls").
type presetEntry struct {
	host, path, note string
}

// balancedHosts is what an agent commonly needs to install dependencies and
// fetch code, besides the built-in providers (added from the catalog).
//
// Hosts that serve anyone's content are narrowed by path where the tool
// that needs them uses a fixed prefix: storage.googleapis.com is every
// Google Cloud Storage bucket, and the Go module proxy only redirects to
// its own.
var balancedHosts = []presetEntry{
	{"registry.npmjs.org", "", "npm"},
	{"registry.yarnpkg.com", "", "npm (yarn)"},
	{"pypi.org", "", "PyPI"},
	{"files.pythonhosted.org", "", "PyPI downloads"},
	{"proxy.golang.org", "", "Go module proxy"},
	{"sum.golang.org", "", "Go checksum database"},
	// proxy.golang.org answers module downloads with a redirect to a
	// signed URL in this bucket.
	{"storage.googleapis.com", "/proxy-golang-org-prod/**", "Go module downloads"},
	{"crates.io", "", "crates.io"},
	{"index.crates.io", "", "crates.io index"},
	{"static.crates.io", "", "crates.io downloads"},
	{"rubygems.org", "", "RubyGems"},
	{"index.rubygems.org", "", "RubyGems index"},
	{"repo.maven.apache.org", "", "Maven Central"},
	{"repo1.maven.org", "", "Maven Central"},
	{"deb.debian.org", "", "Debian archive"},
	{"security.debian.org", "", "Debian security archive"},
	{"archive.ubuntu.com", "", "Ubuntu archive"},
	{"*.archive.ubuntu.com", "", "Ubuntu country mirrors"},
	{"security.ubuntu.com", "", "Ubuntu security archive"},
	{"ports.ubuntu.com", "", "Ubuntu ports archive"},
	{"dl-cdn.alpinelinux.org", "", "Alpine packages"},
	{"github.com", "", "GitHub"},
	{"api.github.com", "", "GitHub API"},
	{"codeload.github.com", "", "GitHub archives"},
	// raw, objects, release-assets, pkg-containers and the other GitHub
	// content hosts are all one label below githubusercontent.com.
	{"*.githubusercontent.com", "", "GitHub content"},
	{"gitlab.com", "", "GitLab"},
	{"registry.gitlab.com", "", "GitLab container registry"},
	{"cdn.registry.gitlab-static.net", "", "GitLab container registry downloads"},
	{"bitbucket.org", "", "Bitbucket"},
	{"api.bitbucket.org", "", "Bitbucket API"},
	{"registry-1.docker.io", "", "Docker Hub"},
	{"auth.docker.io", "", "Docker Hub"},
	{"index.docker.io", "", "Docker Hub"},
	{"production.cloudflare.docker.com", "", "Docker Hub downloads"},
	{"production.cloudfront.docker.com", "", "Docker Hub downloads"},
	{"docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com", "",
		"Docker Hub downloads"},
	{"ghcr.io", "", "GitHub container registry"},
}

// PresetRule is one entry of a preset, as "policy ls" shows it.
type PresetRule struct {
	Rule
	// Note says what the destination is for.
	Note string
}

// presetRules holds each preset's compiled rules, built once.
var presetRules = map[Preset][]*compiled{
	AllowAll: nil,
	DenyAll:  nil,
	Balanced: buildBalanced(),
}

func buildBalanced() []*compiled {
	var out []*compiled
	add := func(host, path, note string) {
		c, err := compile(Rule{Action: Allow, Host: host, Path: path})
		if err != nil {
			panic(fmt.Sprintf("policy preset %s: %v", host, err))
		}
		c.source, c.note = SourcePreset, note
		out = append(out, c)
	}
	// The built-in providers' endpoints, at their own port: the catalog is
	// the one list of them.
	for _, p := range provider.Builtins() {
		for _, e := range p.Endpoints {
			add(fmt.Sprintf("%s:%d", e.Host, e.Port), "", p.Title)
		}
	}
	for _, e := range balancedHosts {
		add(e.host, e.path, e.note)
	}
	return out
}

// PresetRules returns the rules a preset adds, in a fresh slice. AllowAll
// and DenyAll have none: the first allows everything not denied, the
// second nothing.
func PresetRules(p Preset) []PresetRule {
	var out []PresetRule
	for _, c := range presetRules[p] {
		out = append(out, PresetRule{Rule: *c.rule, Note: c.note})
	}
	return out
}
