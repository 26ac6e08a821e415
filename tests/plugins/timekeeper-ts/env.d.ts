// The engine's globals this plugin uses, written by hand: componentize-js runs the code
// in StarlingMonkey, which has web APIs such as TextEncoder/TextDecoder but neither
// Node.js (fs, Buffer, require) nor a DOM, so neither lib "dom" nor @types/node.

interface TextDecoderOptions {
  fatal?: boolean;
  ignoreBOM?: boolean;
}

declare class TextDecoder {
  constructor(label?: string, options?: TextDecoderOptions);
  readonly encoding: string;
  decode(input?: Uint8Array): string;
}

declare class TextEncoder {
  constructor();
  readonly encoding: string;
  encode(input?: string): Uint8Array;
}
