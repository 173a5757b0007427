// Package codec is camvault's use of FFmpeg (the libraries, through
// go-astiav): decoding, scaling and encoding, audio framing, the review
// proxy and thumbnail renderer the transcode stage calls, H.264/AAC MP4
// export (the camera's own H.264 and AAC copied, VP8 and Opus transcoded),
// the WebM writer of VP8 sessions, and the simulated cameras' test
// picture. It works on bytes and media types only, so the stages, review
// and export share it without it knowing any of them.
package codec
