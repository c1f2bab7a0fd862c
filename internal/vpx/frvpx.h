// Small C helpers around libvpx used by package vpx. Every helper performs a
// complete operation in one cgo call and leaves its results in the C-owned
// state struct, so that the Go side never passes pointers to Go variables
// (which would make them escape to the heap).

#ifndef FASTRTC_VPX_HELPERS_H
#define FASTRTC_VPX_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>

// frvpx_dec is the C-owned state of one VP8 decoder.
typedef struct {
	vpx_codec_ctx_t ctx;
	int inited;
	vpx_image_t *img; // picture produced by the last decode, or NULL
	int corrupted;    // VP8D_GET_FRAME_CORRUPTED of the last picture
} frvpx_dec;

vpx_codec_err_t frvpx_dec_init(frvpx_dec *d, unsigned int threads);
vpx_codec_err_t frvpx_dec_decode(frvpx_dec *d, const uint8_t *data, size_t size);
void frvpx_dec_destroy(frvpx_dec *d);

#define FRVPX_MAX_OUT 8

// frvpx_enc_params carries the tunables applied at (re)initialisation.
typedef struct {
	unsigned int width, height;
	unsigned int bitrate_kbps;
	unsigned int fps;
	int cpu_used;
	unsigned int threads;
	unsigned int kf_max_dist;
	unsigned int drop_frame_thresh;
} frvpx_enc_params;

// frvpx_enc is the C-owned state of one VP8 encoder.
typedef struct {
	vpx_codec_ctx_t ctx;
	vpx_codec_enc_cfg_t cfg;
	vpx_image_t img; // wrapper whose planes point at the caller's pixels during one encode
	int inited;
	const char *failed_ctrl; // name of the control that failed in frvpx_enc_init, or NULL
	// Output of the last encode: compressed frame packets (owned by libvpx, valid until the
	// next encode call).
	int nout;
	const void *out_buf[FRVPX_MAX_OUT];
	size_t out_sz[FRVPX_MAX_OUT];
	int out_key[FRVPX_MAX_OUT];
} frvpx_enc;

vpx_codec_err_t frvpx_enc_init(frvpx_enc *e, const frvpx_enc_params *p);
vpx_codec_err_t frvpx_enc_set_bitrate(frvpx_enc *e, unsigned int kbps);
vpx_codec_err_t frvpx_enc_encode(frvpx_enc *e, const uint8_t *y, const uint8_t *u, const uint8_t *v,
                                 int ystride, int ustride, int vstride, int64_t pts, unsigned long duration,
                                 int force_key);
void frvpx_enc_destroy(frvpx_enc *e);

#endif
