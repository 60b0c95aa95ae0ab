export interface CaptureSection {
  readonly phase: string;
  readonly name: string;
  readonly command: string | null;
  readonly body: string;
}
export interface CapturedQueryTable {
  readonly columns: string[];
  readonly units: (string | null)[];
  readonly headers: string[];
  readonly rows: string[][];
}
export function readCapture(text: string): CaptureSection[];
export function findSection(sections: readonly CaptureSection[], phase: string, prefix: string): CaptureSection | null;
export function capturedQueryTable(sections: readonly CaptureSection[], phase: string): CapturedQueryTable | null;
