// The shell commands that do what the page did for one step: submit, poll until done, download the result.
// The key stays out of the text: the commands read it from $BFL_API_KEY, as the README's examples do.

import { TaskStatus } from "./statuses.js";

/** Quote a word for a POSIX shell: single quotes, with each ' written as '\''. */
export function shellQuote(word) {
  return `'${String(word).replace(/'/g, `'\\''`)}'`;
}

/** Text for the inside of a double-quoted shell word. */
function doubleQuoted(text) {
  return String(text).replace(/[\\"$`]/g, (c) => `\\${c}`);
}

/** A JSON value for the inside of an unquoted here-document: \, $ and ` escaped, ! as \u0021 (history expansion). */
function hereDocValue(value) {
  return JSON.stringify(value)
    .replace(/!/g, "\\u0021")
    .replace(/[\\$`]/g, (c) => `\\${c}`);
}

/** The JSON body on one line; input_image (when there is one) is read from the file by base64 when run. */
function hereDocBody(body, imagePath) {
  const { prompt, ...rest } = body;
  const fields = [`"prompt": ${hereDocValue(prompt)}`];
  if (imagePath) fields.push(`"input_image": "$(base64 -w0 ${shellQuote(imagePath)})"`);
  for (const [name, value] of Object.entries(rest)) fields.push(`${hereDocValue(name)}: ${hereDocValue(value)}`);
  return `{${fields.join(", ")}}`;
}

/**
 * @param {object} options
 * @param {string} options.url       the submit URL
 * @param {string} options.pollUrl   the get_result URL, without ?id=
 * @param {object} options.body      the JSON body without input_image
 * @param {string|null} options.imagePath  the input image's file name, or null for text to image
 * @param {string} options.outputPath      where the result is saved
 */
export function curlCommand({ url, pollUrl, body, imagePath, outputPath }) {
  const key = '-H "x-key: ${BFL_API_KEY}"';
  return [
    `request=$(curl -s -X POST ${shellQuote(url)} \\`,
    `  -H 'accept: application/json' ${key} -H 'Content-Type: application/json' \\`,
    "  --data-binary @- <<JSON",
    hereDocBody(body, imagePath),
    "JSON",
    ")",
    'request_id=$(jq -r .id <<< "$request")',
    `until result=$(curl -s "${doubleQuoted(pollUrl)}?id=\${request_id}" ${key}); ` +
      `[ "$(jq -r .status <<< "$result")" != ${TaskStatus.PENDING} ]; do sleep 1; done`,
    'jq -r .status <<< "$result"',
    `curl -s -o ${shellQuote(outputPath)} "$(jq -r .result.sample <<< "$result")"`,
  ].join("\n");
}
