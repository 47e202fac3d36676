//! The XML documents of the S3 API this client reads and writes: listings, multipart upload
//! answers, batch delete results, error bodies, and the request bodies of
//! `CompleteMultipartUpload` and `DeleteObjects`.

use quick_xml::events::Event;

/// Longest answer body parsed (a listing of 1000 keys of 1024 bytes is about 1.5 MiB).
pub const MAX_BODY: usize = 8 << 20;

/// A document the client could not use; says which and why, never its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected answer ({what}): {reason}")]
pub struct XmlError {
    /// Which document was expected.
    pub what: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// An element: local name, text (entities resolved), children.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    fn is_true(&self, name: &str) -> bool {
        self.text_of(name).is_some_and(|t| t.trim() == "true")
    }
}

fn parse(what: &'static str, body: &[u8]) -> Result<Node, XmlError> {
    let fail = |reason: String| XmlError { what, reason };
    let text = std::str::from_utf8(body).map_err(|_| fail("not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| fail(e.to_string()))? {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_owned();
                stack.push(Node { name, ..Node::default() });
            }
            Event::Empty(empty) => {
                let name = empty.local_name().as_ref().to_owned();
                let node = Node { name, ..Node::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| fail("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(text) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let Some(node) = stack.last_mut() else { continue };
                match reference.resolve_char_ref().map_err(|e| fail(e.to_string()))? {
                    Some(c) => node.text.push(c),
                    None => node.text.push_str(
                        quick_xml::escape::resolve_predefined_entity(&reference)
                            .ok_or_else(|| fail("an unknown entity".into()))?,
                    ),
                }
            }
            Event::Eof => return Err(fail("no root element".into())),
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::Comment(_) => {}
        }
    }
}

fn root<'a>(node: &'a Node, what: &'static str, name: &str) -> Result<&'a Node, XmlError> {
    if node.name == name {
        Ok(node)
    } else {
        Err(XmlError { what, reason: format!("the root element is {:?}, not {name}", node.name) })
    }
}

fn required<'a>(node: &'a Node, what: &'static str, name: &str) -> Result<&'a str, XmlError> {
    node.text_of(name).ok_or_else(|| XmlError { what, reason: format!("{name} is missing") })
}

/// The `Code` and `Message` of an S3 error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// The error code (`NoSuchBucket`, `SlowDown`, …).
    pub code: String,
    /// The human-readable message.
    pub message: String,
}

/// The error of an `<Error>` document, or `None` when `body` is not one.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    let node = parse("error", body).ok()?;
    (node.name == "Error").then(|| ErrorBody {
        code: node.text_of("Code").unwrap_or_default().trim().to_owned(),
        message: node.text_of("Message").unwrap_or_default().trim().to_owned(),
    })
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The key (decoded).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The entity tag, without quotes.
    pub etag: String,
    /// When it was last modified (ISO 8601, as the server sent it).
    pub last_modified: String,
}

/// One page of `ListObjectsV2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ListedObject>,
    /// The common prefixes (with a delimiter), decoded.
    pub common_prefixes: Vec<String>,
    /// Token of the next page; `None` on the last one.
    pub next_continuation_token: Option<String>,
}

fn url_decoded(what: &'static str, encoded: bool, value: &str) -> Result<String, XmlError> {
    if !encoded {
        return Ok(value.to_owned());
    }
    // `encoding-type=url` encodes a space as `+`, as a form would.
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| XmlError { what, reason: "a key is not UTF-8 once decoded".into() })
}

/// Reads a `ListBucketResult` (ListObjectsV2) page; keys sent with `EncodingType` `url` are
/// decoded.
pub fn parse_list_objects(body: &[u8]) -> Result<ListPage, XmlError> {
    const WHAT: &str = "ListObjectsV2";
    let node = parse(WHAT, body)?;
    let node = root(&node, WHAT, "ListBucketResult")?;
    let encoded = node.text_of("EncodingType").is_some_and(|t| t.trim().eq_ignore_ascii_case("url"));
    let mut objects = Vec::new();
    for entry in node.children("Contents") {
        let size = required(entry, WHAT, "Size")?;
        objects.push(ListedObject {
            key: url_decoded(WHAT, encoded, required(entry, WHAT, "Key")?)?,
            size: size.trim().parse().map_err(|_| XmlError { what: WHAT, reason: "a Size is not a number".into() })?,
            etag: entry.text_of("ETag").unwrap_or_default().trim().trim_matches('"').to_owned(),
            last_modified: entry.text_of("LastModified").unwrap_or_default().trim().to_owned(),
        });
    }
    let common_prefixes = node
        .children("CommonPrefixes")
        .map(|p| url_decoded(WHAT, encoded, required(p, WHAT, "Prefix")?))
        .collect::<Result<_, _>>()?;
    let next_continuation_token = if node.is_true("IsTruncated") {
        let token = required(node, WHAT, "NextContinuationToken")?;
        if token.is_empty() {
            return Err(XmlError { what: WHAT, reason: "a truncated listing without a continuation token".into() });
        }
        Some(token.to_owned())
    } else {
        None
    };
    Ok(ListPage { objects, common_prefixes, next_continuation_token })
}

/// The upload id of an `InitiateMultipartUploadResult`.
pub fn parse_initiate(body: &[u8]) -> Result<String, XmlError> {
    const WHAT: &str = "CreateMultipartUpload";
    let node = parse(WHAT, body)?;
    let id = required(root(&node, WHAT, "InitiateMultipartUploadResult")?, WHAT, "UploadId")?.trim();
    if id.is_empty() {
        return Err(XmlError { what: WHAT, reason: "UploadId is empty".into() });
    }
    Ok(id.to_owned())
}

/// What a `CompleteMultipartUpload` answered with status 200: the object's entity tag, or the
/// error S3 reports inside a successful status when the completion failed late.
pub fn parse_complete(body: &[u8]) -> Result<Result<String, ErrorBody>, XmlError> {
    const WHAT: &str = "CompleteMultipartUpload";
    if let Some(error) = parse_error(body) {
        return Ok(Err(error));
    }
    let node = parse(WHAT, body)?;
    let node = root(&node, WHAT, "CompleteMultipartUploadResult")?;
    Ok(Ok(node.text_of("ETag").unwrap_or_default().trim().trim_matches('"').to_owned()))
}

/// A key a batch delete could not delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: String,
    /// The error code.
    pub code: String,
}

/// The failures listed in a `DeleteResult` (quiet mode lists only those).
pub fn parse_delete_result(body: &[u8]) -> Result<Vec<DeleteFailure>, XmlError> {
    const WHAT: &str = "DeleteObjects";
    let node = parse(WHAT, body)?;
    let node = root(&node, WHAT, "DeleteResult")?;
    node.children("Error")
        .map(|e| {
            Ok(DeleteFailure {
                key: required(e, WHAT, "Key")?.to_owned(),
                code: e.text_of("Code").unwrap_or_default().trim().to_owned(),
            })
        })
        .collect()
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Its object key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
}

/// One page of `ListMultipartUploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsPage {
    /// The uploads in progress.
    pub uploads: Vec<PendingUpload>,
    /// Where the next page starts (key marker, upload id marker), when this one is truncated.
    pub next: Option<(String, String)>,
}

/// Reads a `ListMultipartUploadsResult` page.
pub fn parse_list_uploads(body: &[u8]) -> Result<UploadsPage, XmlError> {
    const WHAT: &str = "ListMultipartUploads";
    let node = parse(WHAT, body)?;
    let node = root(&node, WHAT, "ListMultipartUploadsResult")?;
    let encoded = node.text_of("EncodingType").is_some_and(|t| t.trim().eq_ignore_ascii_case("url"));
    let uploads = node
        .children("Upload")
        .map(|u| {
            Ok(PendingUpload {
                key: url_decoded(WHAT, encoded, required(u, WHAT, "Key")?)?,
                upload_id: required(u, WHAT, "UploadId")?.trim().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, XmlError>>()?;
    let next = if node.is_true("IsTruncated") {
        let key = url_decoded(WHAT, encoded, node.text_of("NextKeyMarker").unwrap_or_default())?;
        Some((key, node.text_of("NextUploadIdMarker").unwrap_or_default().to_owned()))
    } else {
        None
    };
    Ok(UploadsPage { uploads, next })
}

/// The body of `CompleteMultipartUpload` for `parts` (part number, entity tag), in order.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut body = String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (number, etag) in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>\"{}\"</ETag></Part>",
            quick_xml::escape::escape(etag.trim_matches('"'))
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// The body of a quiet `DeleteObjects` of `keys`.
pub fn delete_body(keys: &[String]) -> String {
    let mut body = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>");
    for key in keys {
        body.push_str(&format!("<Object><Key>{}</Key></Object>", quick_xml::escape::escape(key.as_str())));
    }
    body.push_str("</Delete>");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>
<BucketName>missing</BucketName><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
        assert_eq!(
            parse_error(body),
            Some(ErrorBody { code: "NoSuchBucket".into(), message: "The specified bucket does not exist".into() })
        );
        assert_eq!(parse_error(b"<ListBucketResult/>"), None);
        assert_eq!(parse_error(b"<html>bad gateway"), None);
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_truncated_url_encoded_listing() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>p%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <Contents><Key>p/a+b%26c%C3%A9</Key><LastModified>2026-12-06T05:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/plus%2Bsign</Key><Size>0</Size></Contents>
  <CommonPrefixes><Prefix>p/dir%2F</Prefix></CommonPrefixes>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list_objects(body).unwrap();
        assert_eq!(
            page.objects,
            vec![
                ListedObject {
                    key: "p/a b&cé".into(),
                    size: 12,
                    etag: "9b2cf535f27731c974343645a3985328".into(),
                    last_modified: "2026-12-06T05:00:00.000Z".into(),
                },
                ListedObject { key: "p/plus+sign".into(), size: 0, etag: String::new(), last_modified: String::new() },
            ]
        );
        assert_eq!(page.common_prefixes, vec!["p/dir/".to_owned()]);
        assert_eq!(page.next_continuation_token.as_deref(), Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
    }

    #[test]
    fn a_last_plain_listing_with_escaped_keys() {
        let body = b"<ListBucketResult><IsTruncated>false</IsTruncated>\
            <Contents><Key>a&amp;b&lt;c&#x263A;</Key><Size>3</Size></Contents></ListBucketResult>";
        let page = parse_list_objects(body).unwrap();
        assert_eq!(page.objects[0].key, "a&b<c\u{263A}");
        assert_eq!(page.next_continuation_token, None);
        assert_eq!(parse_list_objects(b"<ListBucketResult/>").unwrap(), ListPage::default());
    }

    #[test]
    fn malformed_listings_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 5] = [
            (b"<Error><Code>x</Code></Error>", "the root element is \"Error\", not ListBucketResult"),
            (b"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", "Key is missing"),
            (
                b"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
                "a Size is not a number",
            ),
            (
                b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
                "NextContinuationToken is missing",
            ),
            (b"<ListBucketResult><Contents>", "no root element"),
        ];
        for (body, reason) in cases {
            let error = parse_list_objects(body).unwrap_err();
            assert_eq!(
                error,
                XmlError { what: "ListObjectsV2", reason: reason.into() },
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_list_objects(b"<a></b>").is_err());
    }

    #[test]
    fn multipart_answers() {
        let initiate = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
            <UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(parse_initiate(initiate).unwrap(), "VXBsb2FkIElE");
        assert!(
            parse_initiate(b"<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>")
                .is_err()
        );
        let complete = b"<CompleteMultipartUploadResult><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\
            </CompleteMultipartUploadResult>";
        assert_eq!(parse_complete(complete).unwrap(), Ok("3858f62230ac3c915f300c664312c11f-9".into()));
        let late = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>";
        assert_eq!(parse_complete(late).unwrap().unwrap_err().code, "InternalError");
        let uploads = b"<ListMultipartUploadsResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>\
            <NextKeyMarker>a%2Fb</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>\
            <Upload><Key>a%2Fb</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>";
        let page = parse_list_uploads(uploads).unwrap();
        assert_eq!(page.uploads, vec![PendingUpload { key: "a/b".into(), upload_id: "u2".into() }]);
        assert_eq!(page.next, Some(("a/b".into(), "u2".into())));
    }

    #[test]
    fn delete_results_list_failures() {
        let body = b"<DeleteResult><Deleted><Key>ok</Key></Deleted>\
            <Error><Key>locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>";
        assert_eq!(
            parse_delete_result(body).unwrap(),
            vec![DeleteFailure { key: "locked".into(), code: "AccessDenied".into() }]
        );
        assert_eq!(parse_delete_result(b"<DeleteResult/>").unwrap(), vec![]);
    }

    #[test]
    fn request_bodies_escape_keys_and_quote_etags() {
        assert_eq!(
            complete_body(&[(1, "\"e1\"".into()), (2, "e2".into())]),
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag></Part></CompleteMultipartUpload>"
        );
        let body = delete_body(&["a<&>b".into(), "c".into()]);
        assert_eq!(
            body,
            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>\
             <Object><Key>a&lt;&amp;&gt;b</Key></Object><Object><Key>c</Key></Object></Delete>"
        );
    }
}
