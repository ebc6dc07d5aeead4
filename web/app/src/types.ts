/** The SDK's shapes under the names the app uses (docs/protocol.md, camelCased; 64-bit ids
 * as bigint), and the content types it shows. */
export type {
  Content,
  ConversationInfo as Conversation,
  FriendInfo as Friend,
  FriendRequestInfo as FriendRequest,
  GroupAdd,
  GroupInfo as Group,
  InvitationInfo as Invitation,
  MemberInfo as Member,
  Message,
  Reply,
  UserProfile as Profile,
} from "edgeim-sdk";

/** Content types of docs/protocol.md section 10.5 that the app shows. */
export const TEXT = 1;
export const IMAGE = 2;
export const FILE = 3;
