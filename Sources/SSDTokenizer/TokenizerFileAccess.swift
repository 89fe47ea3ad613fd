#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reading the small set of files a tokenizer folder holds, with errors that name the file.
enum TokenizerFileAccess {
    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    static func exists(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory
    }

    static func read(_ path: String) throws(TokenizerError) -> Data {
        guard exists(path) else { throw .fileNotFound(path: path) }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadableFile(path: path, reason: "\(error)")
        }
    }

    static func bytes(_ path: String) throws(TokenizerError) -> [UInt8] {
        [UInt8](try read(path))
    }

    /// Runs `parse` over the file's bytes; JSON syntax errors become `.malformedJSON` naming the file.
    static func parseJSON<T>(_ path: String, _ parse: (inout JSONScanner) throws(JSONScanner.Failure) -> T) throws(TokenizerError) -> T {
        var scanner = JSONScanner(try bytes(path))
        do {
            let result = try parse(&scanner)
            try scanner.expectEnd()
            return result
        } catch {
            throw .malformedJSON(path: path, reason: error.description)
        }
    }

    /// A file holding one JSON object.
    static func jsonObject(_ path: String) throws(TokenizerError) -> [String: JSONValue] {
        guard case .object(let object) = try parseJSON(path, { (scanner) throws(JSONScanner.Failure) in try scanner.value() }) else {
            throw .malformedJSON(path: path, reason: "expected a JSON object")
        }
        return object
    }
}
