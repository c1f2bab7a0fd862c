package fastrtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs (ICE, DTLS, SCTP, TURN...) to the stream's logger at debug
// level, with the pion scope as "pion": pion reports expected conditions (a socket closed
// at shutdown, a candidate that failed) as errors, and would otherwise print them to stderr.
type pionLogs struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) out(level, msg string) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(msg, "pion_level", level)
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(format string, args ...any) {}
func (l pionLogger) Debug(msg string)                  { l.out("debug", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.out("debug", fmt.Sprintf(format, args...)) }
func (l pionLogger) Info(msg string)                   { l.out("info", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.out("info", fmt.Sprintf(format, args...)) }
func (l pionLogger) Warn(msg string)                   { l.out("warn", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.out("warn", fmt.Sprintf(format, args...)) }
func (l pionLogger) Error(msg string)                  { l.out("error", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.out("error", fmt.Sprintf(format, args...)) }
