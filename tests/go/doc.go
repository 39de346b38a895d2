package contract

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// A statement of the contract in docs/go-integration.md: a ```sql block whose first line is
// "-- contract: NAME". The node-postgres runner reads the doc with the same pattern.
var contractBlock = regexp.MustCompile("```sql\n-- contract: ([\\w-]+)\n([\\s\\S]*?)```")

// Statements reads the contract's statements from the doc, by name, in the doc's order.
func Statements(docPath string) (map[string]string, []string, error) {
	text, err := os.ReadFile(docPath)
	if err != nil {
		return nil, nil, err
	}
	statements := map[string]string{}
	var order []string
	for _, match := range contractBlock.FindAllStringSubmatch(string(text), -1) {
		name, sql := match[1], strings.TrimSpace(match[2])
		if _, seen := statements[name]; seen {
			return nil, nil, fmt.Errorf("statement %q is documented twice", name)
		}
		statements[name] = sql
		order = append(order, name)
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%s documents no statement", docPath)
	}
	return statements, order, nil
}
