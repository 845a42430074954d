package provider

// builtinSpec is one entry of the built-in catalog.
type builtinSpec struct {
	name, title string
	urls        []string // base URLs; a host alone covers every path
	auth        Auth
	env         []string
}

// rawKey is a header that carries the secret with no prefix.
func rawKey(header string) Auth { return Auth{Kind: AuthHeader, Header: header} }

// catalog lists the public APIs cordon knows out of the box. Each entry's
// hosts and header are those the service documents for API keys.
var catalog = []builtinSpec{
	{"openai", "OpenAI", []string{"https://api.openai.com"}, Bearer, []string{"OPENAI_API_KEY"}},
	{"anthropic", "Anthropic", []string{"https://api.anthropic.com"},
		rawKey("X-Api-Key"), []string{"ANTHROPIC_API_KEY"}},
	{"google", "Google Gemini and Vertex AI", []string{
		"https://generativelanguage.googleapis.com",
		"https://aiplatform.googleapis.com",
	}, rawKey("X-Goog-Api-Key"), []string{"GEMINI_API_KEY", "GOOGLE_API_KEY"}},
	{"github", "GitHub", []string{
		"https://api.github.com",
		"https://github.com",
		"https://raw.githubusercontent.com",
		"https://api.githubcopilot.com",
	}, Bearer, []string{"GH_TOKEN", "GITHUB_TOKEN"}},
	{"groq", "Groq", []string{"https://api.groq.com"}, Bearer, []string{"GROQ_API_KEY"}},
	{"mistral", "Mistral AI", []string{"https://api.mistral.ai"}, Bearer, []string{"MISTRAL_API_KEY"}},
	{"xai", "xAI", []string{"https://api.x.ai"}, Bearer, []string{"XAI_API_KEY"}},
	{"openrouter", "OpenRouter", []string{"https://openrouter.ai/api"}, Bearer,
		[]string{"OPENROUTER_API_KEY"}},
	{"deepseek", "DeepSeek", []string{"https://api.deepseek.com"}, Bearer, []string{"DEEPSEEK_API_KEY"}},
	{"together", "Together AI", []string{"https://api.together.xyz", "https://api.together.ai"},
		Bearer, []string{"TOGETHER_API_KEY"}},
	{"fireworks", "Fireworks AI", []string{"https://api.fireworks.ai"}, Bearer,
		[]string{"FIREWORKS_API_KEY"}},
	{"cerebras", "Cerebras", []string{"https://api.cerebras.ai"}, Bearer, []string{"CEREBRAS_API_KEY"}},
	{"nebius", "Nebius AI", []string{
		"https://api.tokenfactory.nebius.com",
		"https://api.studio.nebius.com",
		"https://api.studio.nebius.ai",
	}, Bearer, []string{"NEBIUS_API_KEY"}},
	{"huggingface", "Hugging Face Inference Providers", []string{"https://router.huggingface.co"},
		Bearer, []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}},
}

// Builtins returns a fresh copy of the built-in catalog, in catalog order.
func Builtins() []*Provider {
	out := make([]*Provider, 0, len(catalog))
	for _, spec := range catalog {
		p := &Provider{
			Name:    spec.name,
			Title:   spec.title,
			Builtin: true,
			Auth:    spec.auth,
			Env:     append([]string(nil), spec.env...),
		}
		for _, u := range spec.urls {
			e, err := ParseBaseURL(u)
			if err != nil {
				panic("provider catalog: " + err.Error())
			}
			p.Endpoints = append(p.Endpoints, e)
		}
		out = append(out, p)
	}
	return out
}

// IsBuiltin reports whether name belongs to the built-in catalog.
func IsBuiltin(name string) bool {
	for _, spec := range catalog {
		if spec.name == name {
			return true
		}
	}
	return false
}
