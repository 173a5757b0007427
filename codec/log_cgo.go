package codec

// FFmpeg's log callback, in C: go-astiav's own (astiav.SetLogCallback)
// formats every message with vsprintf into a 1024-byte buffer on the
// stack, and FFmpeg quotes parts of its input in some messages, so a
// hostile stream could write past it. This one cuts a long message
// (vsnprintf) instead.

/*
#cgo pkg-config: libavutil
#include <stdarg.h>
#include <stdio.h>
#include <libavutil/log.h>

extern void camvaultFFmpegLog(void *avcl, int level, char *msg);

static void camvault_log_callback(void *avcl, int level, const char *fmt, va_list vl)
{
	if (level > av_log_get_level()) return;
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, vl);
	camvaultFFmpegLog(avcl, level, msg);
}

static void camvault_set_log_callback(void) { av_log_set_callback(camvault_log_callback); }
static void camvault_reset_log_callback(void) { av_log_set_callback(av_log_default_callback); }

// The name of what logged ("h264", "mp4", ...): every context FFmpeg logs
// with starts with a pointer to its AVClass.
static const char *camvault_item_name(void *avcl)
{
	if (!avcl) return NULL;
	const AVClass *c = *(const AVClass **)avcl;
	if (!c || !c->item_name) return NULL;
	return c->item_name(avcl);
}
*/
import "C"

import (
	"unsafe"

	"github.com/asticode/go-astiav"
)

func setLogCallback()   { C.camvault_set_log_callback() }
func resetLogCallback() { C.camvault_reset_log_callback() }

//export camvaultFFmpegLog
func camvaultFFmpegLog(avcl unsafe.Pointer, level C.int, msg *C.char) {
	var component string
	if name := C.camvault_item_name(avcl); name != nil {
		component = C.GoString(name)
	}
	ffmpegLine(component, astiav.LogLevel(level), C.GoString(msg))
}
