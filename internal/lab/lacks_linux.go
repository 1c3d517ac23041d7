package lab

import (
	"os"
	"strings"
)

// Lacks describes what this host lacks to build a lab whose scenario needs
// only tools (root, the tools, network namespaces), or returns "". Unlike
// Require, it does not ask for the tools of every scenario: the testing kit
// builds black holes only (ip, nft, ethtool).
func Lacks(tools ...string) string {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root")
	}
	var absent []string
	for _, tool := range tools {
		if toolPath(tool) == tool {
			absent = append(absent, tool)
		}
	}
	if len(absent) > 0 {
		why = append(why, "missing "+strings.Join(absent, ", "))
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		why = append(why, "no network namespaces")
	}
	return strings.Join(why, "; ")
}
