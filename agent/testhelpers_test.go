package agent

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"io"
)

func bufioReader(r io.Reader) *bufio.Reader  { return bufio.NewReader(r) }
func decodeForTest(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
func beUint64(b []byte) uint64               { return binary.BigEndian.Uint64(b) }
