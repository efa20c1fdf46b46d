//! The generated v1 contract (`proto/vmware/gateway/v1`) and its descriptor set.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("vmware.gateway.v1");

/// Encoded `FileDescriptorSet` of the v1 contract (with imports and comments), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));

/// Encoded `FileDescriptorSet` of the `google.rpc` error details this gateway sends (from
/// tonic-types), so that reflection clients (grpcurl) can decode error details.
pub const RPC_DESCRIPTOR_SET: &[u8] = tonic_types::pb::FILE_DESCRIPTOR_SET;

/// The codec of every v1 service: prost's, with a 1 KiB encode buffer instead of tonic's
/// 8 KiB. tonic allocates that buffer when a call starts and an open stream keeps it for its
/// whole life, so with 10,000 open watch streams the default alone held 80 MiB; a task
/// message (a few hundred bytes in the BASIC view) fits in 1 KiB, and a larger one grows the
/// buffer in 1 KiB steps.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(std::marker::PhantomData<(T, U)>);

/// The initial (and growth step) size of a call's encode buffer.
const ENCODE_BUFFER_BYTES: usize = 1024;
/// How many bytes of ready messages tonic batches into one write (its default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(std::marker::PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(tonic::codec::BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(tonic::codec::BufferSettings::default())
    }
}
