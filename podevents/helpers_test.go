package podevents

import (
	"strconv"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"
)

func typesUID(i int) types.UID { return types.UID("uid-" + strconv.Itoa(i)) }

func utf8Valid(s string) bool { return utf8.ValidString(s) }
