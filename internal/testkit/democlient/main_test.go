package democlient_test

import (
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// env is one kube-apiserver and MinIO for the package: Run is tested against
// real STS credentials and a real S3, not a fake.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }
