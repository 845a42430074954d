package demo

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// ClientArg runs cordon as the demo's client, inside the sandbox.
const ClientArg = "__demo-client"

// RunClient is the client inside the sandbox. It reports the credential
// variables it sees, then streams a chat completion from OPENAI_BASE_URL
// with OPENAI_API_KEY, through the proxy the environment names, printing
// each piece as it arrives. It writes its whole environment to envFile
// for the host to inspect.
func RunClient(out io.Writer, envFile string) error {
	env := os.Environ()
	sort.Strings(env)
	if err := os.WriteFile(envFile, []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	base, key := os.Getenv("OPENAI_BASE_URL"), os.Getenv("OPENAI_API_KEY")
	fmt.Fprintf(out, "OPENAI_BASE_URL=%s\n", base)
	fmt.Fprintf(out, "OPENAI_API_KEY=%s\n", key)
	fmt.Fprintf(out, "HTTPS_PROXY=%s\n", os.Getenv("HTTPS_PROXY"))
	if base == "" {
		return errors.New("OPENAI_BASE_URL is not set")
	}

	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":"say hi"}]}`, Model)
	req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(base, "/")+"/chat/completions", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(msg)))
	}

	fmt.Fprint(out, "reply: ")
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(data), &chunk) == nil && len(chunk.Choices) > 0 {
			fmt.Fprint(out, chunk.Choices[0].Delta.Content)
		}
	}
	fmt.Fprintln(out)
	return sc.Err()
}
